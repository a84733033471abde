// hearth-jailer for real (root, cgroup v1 on these hosts): a jailed
// hearth-vmm boots the test guest over its control channel while the test
// checks, from outside, everything the jail promises; a probe binary run
// in the jail tries to get out; a seccomp violation is reported; and after
// the VMM ends, the jail and cgroups can be removed with nothing left
// mounted.
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/vmm_connection.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/subprocess.h"

namespace hearth {
namespace {

namespace control = ::hearth::vmm::v1;
using agent::VmmConnection;
using testing::Runfile;

constexpr uid_t kUid = 61234;
constexpr gid_t kGid = 61234;

// A spawned jailer with the child end of a control socketpair on fd 3 and
// its stderr on a pipe.
struct Jailed {
  pid_t pid = -1;
  std::unique_ptr<VmmConnection> connection;
  int err_fd = -1;
  std::unique_ptr<testing::ScopedTempDir> base_dir;  // --chroot-base-dir
  std::string base;
  std::string id;

  std::string ReadErr() {
    std::string err;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(err_fd, buf, sizeof(buf))) > 0) err.append(buf, static_cast<size_t>(n));
    return err;
  }
  int Wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  }
};

Jailed StartJailer(const std::string& id, const std::string& exec_file,
                   std::vector<std::string> jailer_flags, std::vector<std::string> exec_args) {
  Jailed j;
  j.id = id;
  j.base_dir = std::make_unique<testing::ScopedTempDir>("hearth-jail-");
  j.base = j.base_dir->path();
  int sockets[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets), 0);
  int err_pipe[2];
  EXPECT_EQ(::pipe2(err_pipe, O_CLOEXEC), 0);
  std::vector<std::string> argv = {Runfile("jailer/hearth-jailer"),
                                   "--id",
                                   id,
                                   "--exec-file",
                                   exec_file,
                                   "--uid",
                                   std::to_string(kUid),
                                   "--gid",
                                   std::to_string(kGid),
                                   "--chroot-base-dir",
                                   j.base,
                                   "--keep-fd",
                                   "3"};
  argv.insert(argv.end(), jailer_flags.begin(), jailer_flags.end());
  argv.push_back("--");
  argv.insert(argv.end(), exec_args.begin(), exec_args.end());
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sockets[1], 3);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 1);
  char* envp[] = {nullptr};
  EXPECT_EQ(posix_spawn(&j.pid, args[0], &actions, nullptr, args.data(), envp), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sockets[1]);
  ::close(err_pipe[1]);
  j.err_fd = err_pipe[0];
  j.connection = std::make_unique<VmmConnection>(MessageChannel(UniqueFd(sockets[0])));
  return j;
}

std::string ProcStatus(pid_t pid, const std::string& field) {
  absl::StatusOr<std::string> status = testing::ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (absl::StartsWith(line, field + ":")) {
      return std::string(absl::StripAsciiWhitespace(line.substr(field.size() + 1)));
    }
  }
  return "";
}

// Boots the test guest (cpu_loop, long enough to inspect the VMM) through
// the control channel; the console arrives on `console`.
absl::StatusOr<control::Response> BootGuest(VmmConnection* connection, const std::string& args,
                                            int* console) {
  control::Request request;
  control::Boot* boot = request.mutable_boot();
  boot->mutable_config()->mutable_boot_source()->set_kernel_image_path("(fd)");
  boot->mutable_config()->mutable_boot_source()->set_boot_args("console=ttyS0 " + args);
  boot->mutable_config()->mutable_machine_config()->set_mem_size_mib(64);
  control::FdMap* fds = boot->mutable_fds();
  fds->set_kernel(0);
  fds->set_console(1);
  int kernel = ::open(Runfile("tests/guest/guest.elf").c_str(), O_RDONLY | O_CLOEXEC);
  int pair[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
  *console = pair[0];
  absl::StatusOr<control::Response> response =
      connection->Call(request, {kernel, pair[1]}, absl::Seconds(30));
  ::close(kernel);
  ::close(pair[1]);
  return response;
}

std::string ReadConsoleUntil(int fd, const std::string& marker, absl::Duration timeout) {
  std::string out;
  absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  while (!absl::StrContains(out, marker) && absl::Now() < deadline) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, 100) != 1) continue;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool IsStatic(const std::string& path) {
  absl::StatusOr<std::string> elf = testing::ReadFile(path);
  if (!elf.ok() || elf->size() < sizeof(Elf64_Ehdr)) return false;
  Elf64_Ehdr ehdr;
  std::memcpy(&ehdr, elf->data(), sizeof(ehdr));
  for (int i = 0; i < ehdr.e_phnum; ++i) {
    Elf64_Phdr phdr;
    std::memcpy(&phdr, elf->data() + ehdr.e_phoff + i * sizeof(phdr), sizeof(phdr));
    if (phdr.p_type == PT_INTERP || phdr.p_type == PT_DYNAMIC) return false;
  }
  return true;
}

class JailerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::IsAsanBuild()) {
      testing::PrintSkipped(
          "sanitizer build: binaries are dynamic and cannot run in an empty jail");
      GTEST_SKIP();
    }
    HEARTH_REQUIRE_ROOT();
    HEARTH_REQUIRE_KVM();
  }
};

TEST_F(JailerTest, JailedVmmBootsAndIsConfinedFromOutside) {
  const std::string vmm = Runfile("vmm/hearth-vmm");
  ASSERT_TRUE(IsStatic(vmm)) << "hearth-vmm must be statically linked";
  ASSERT_TRUE(IsStatic(Runfile("jailer/hearth-jailer")));
  const std::string id = absl::StrCat("jailtest-", ::getpid());
  const std::string parent = absl::StrCat("hearth-jailer-test-", ::getpid());
  Jailed j = StartJailer(id, vmm,
                         {"--parent-cgroup", parent, "--cgroup", "memory.limit_in_bytes=268435456",
                          "--cgroup", "pids.max=32"},
                         {"--control_fd=3"});
  absl::StatusOr<control::Event> ready = j.connection->WaitForEvent(absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status() << "\n" << j.ReadErr();
  ASSERT_TRUE(ready->has_ready());
  EXPECT_EQ(ready->ready().pid(), j.pid) << "no --new-pid-ns: the VMM replaced the jailer";
  int console = -1;
  absl::StatusOr<control::Response> booted =
      BootGuest(j.connection.get(), "hearth.test=cpu_loop hearth.iterations=4000000000", &console);
  if (!booted.ok() || !VmmConnection::StatusOf(*booted).ok()) {
    ::kill(j.pid, SIGKILL);
    j.Wait();
    FAIL() << (booted.ok() ? booted->message() : booted.status().ToString()) << "\n" << j.ReadErr();
  }
  std::string out = ReadConsoleUntil(console, "test=cpu_loop", absl::Seconds(30));
  EXPECT_TRUE(absl::StrContains(out, "hearth-guest: boot=linux64 test=cpu_loop")) << out;

  // Identity and privileges, from /proc.
  EXPECT_EQ(ProcStatus(j.pid, "Uid"), absl::StrCat(kUid, "\t", kUid, "\t", kUid, "\t", kUid));
  EXPECT_EQ(ProcStatus(j.pid, "Gid"), absl::StrCat(kGid, "\t", kGid, "\t", kGid, "\t", kGid));
  EXPECT_EQ(ProcStatus(j.pid, "Groups"), "");
  EXPECT_EQ(ProcStatus(j.pid, "Seccomp"), "2");
  EXPECT_EQ(ProcStatus(j.pid, "NoNewPrivs"), "1");
  for (const char* caps : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(ProcStatus(j.pid, caps), "0000000000000000") << caps;
  }
  // Its root is the jail.
  struct stat jail_root, proc_root;
  std::string root = absl::StrCat(j.base, "/hearth-vmm/", id, "/root");
  ASSERT_EQ(::stat(root.c_str(), &jail_root), 0);
  ASSERT_EQ(::stat(absl::StrCat("/proc/", j.pid, "/root/").c_str(), &proc_root), 0);
  EXPECT_EQ(jail_root.st_ino, proc_root.st_ino);
  // In its cgroups, with the limits in force.
  std::string memory_cg = absl::StrCat("/sys/fs/cgroup/memory/", parent, "/", id);
  std::string pids_cg = absl::StrCat("/sys/fs/cgroup/pids/", parent, "/", id);
  EXPECT_TRUE(absl::StrContains(*testing::ReadFile(memory_cg + "/tasks"), std::to_string(j.pid)));
  EXPECT_EQ(*testing::ReadFile(memory_cg + "/memory.limit_in_bytes"), "268435456\n");
  EXPECT_EQ(*testing::ReadFile(pids_cg + "/pids.max"), "32\n");
  std::string cgroups = *testing::ReadFile(absl::StrCat("/proc/", j.pid, "/cgroup"));
  EXPECT_TRUE(absl::StrContains(cgroups, absl::StrCat(":memory:/", parent, "/", id))) << cgroups;
  EXPECT_EQ(std::stoi(*testing::ReadFile(memory_cg + "/memory.usage_in_bytes")) > 0, true);

  // Stop the VM; afterwards everything the jail made can be removed.
  control::Request shutdown;
  shutdown.mutable_shutdown();
  ASSERT_TRUE(j.connection->Send(shutdown).ok());
  int status = j.Wait();
  EXPECT_TRUE(WIFEXITED(status)) << status << "\n" << j.ReadErr();
  ::close(console);
  for (const std::string& cg : {memory_cg, pids_cg}) {
    EXPECT_EQ(::rmdir(cg.c_str()), 0) << cg << ": " << std::strerror(errno);
    ::rmdir(cg.substr(0, cg.rfind('/')).c_str());  // the parent
  }
  EXPECT_EQ(::rmdir(root.c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(::rmdir(absl::StrCat(j.base, "/hearth-vmm/", id).c_str()), 0);
  EXPECT_FALSE(absl::StrContains(*testing::ReadFile("/proc/self/mountinfo"), j.base))
      << "a jail mount leaked into the host";
}

TEST_F(JailerTest, EscapeAttemptsFromInsideFail) {
  const std::string id = absl::StrCat("probe-", ::getpid());
  Jailed j = StartJailer(id, Runfile("tests/jail_probe"), {"--new-pid-ns"}, {});
  int status = j.Wait();
  std::string out = j.ReadErr();
  EXPECT_TRUE(absl::StrContains(out, absl::StrCat("PROBE uid=", kUid, " gid=", kGid))) << out;
  EXPECT_TRUE(absl::StrContains(out, "PROBE-DONE failures=0")) << out;
  EXPECT_FALSE(absl::StrContains(out, "ESCAPE-POSSIBLE")) << out;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << out;
  ::rmdir(absl::StrCat(j.base, "/jail_probe/", id, "/root").c_str());
}

class SeccompViolationTest : public JailerTest,
                             public ::testing::WithParamInterface<std::tuple<std::string, bool>> {};

TEST_P(SeccompViolationTest, ForbiddenSyscallKillsWithSigsysAndIsReported) {
  const auto& [thread, new_pid_ns] = GetParam();
  const std::string id = absl::StrCat("sigsys-", thread, new_pid_ns ? "-ns-" : "-", ::getpid());
  std::vector<std::string> flags;
  if (new_pid_ns) flags.push_back("--new-pid-ns");
  Jailed j = StartJailer(id, Runfile("vmm/hearth-vmm"), flags,
                         {"--control_fd=3", "--seccomp_test_violation=" + thread});
  ASSERT_TRUE(j.connection->WaitForEvent(absl::Seconds(30)).ok());
  int console = -1;
  absl::StatusOr<control::Response> booted =
      BootGuest(j.connection.get(), "hearth.test=cpu_loop hearth.iterations=4000000000", &console);
  int status = j.Wait();
  std::string err = j.ReadErr();
  // With --new-pid-ns the jailer is the reaper and relays the signal.
  ASSERT_TRUE(WIFSIGNALED(status)) << status << "\n" << err;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  EXPECT_TRUE(absl::StrContains(err, "hearth-vmm: bad syscall 257")) << err;
  ::close(console);
  ::rmdir(absl::StrCat(j.base, "/hearth-vmm/", id, "/root").c_str());
}

INSTANTIATE_TEST_SUITE_P(Threads, SeccompViolationTest,
                         ::testing::Combine(::testing::Values("vcpu", "loop"), ::testing::Bool()));

TEST_F(JailerTest, StepFailuresAreNamed) {
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{"--netns", "/nonexistent/netns"}, "network namespace: open --netns /nonexistent/netns"},
      {{"--cgroup", "nosuchctl.max=1"},
       "cgroups: cgroup v1: no hierarchy is mounted for the \"nosuchctl\""},
      {{"--resource-limit", "no-file=100000000"},
       "resource limits: --resource-limit no-file=100000000"},
  };
  for (const Case& c : cases) {
    Jailed j =
        StartJailer(absl::StrCat("fail-", ::getpid()), Runfile("vmm/hearth-vmm"), c.flags, {});
    int status = j.Wait();
    std::string err = j.ReadErr();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
    EXPECT_TRUE(absl::StrContains(err, "hearth-jailer: " + c.expected)) << err;
  }
}

}  // namespace
}  // namespace hearth
