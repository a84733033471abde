#include "vmm/seccomp/seccomp.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace hearth::vmm {
namespace {

SeccompOptions Options() {
  SeccompOptions options;
  options.kick_signal = SIGRTMIN;
  return options;
}

TEST(Seccomp, ListsAreSmallerThanFirecrackers) {
  size_t loop = DistinctSyscalls(AllowList(ThreadKind::kEventLoop, Options()));
  size_t vcpu = DistinctSyscalls(AllowList(ThreadKind::kVcpu, Options()));
  SeccompOptions standalone = Options();
  standalone.standalone = true;
  size_t loop_standalone = DistinctSyscalls(AllowList(ThreadKind::kEventLoop, standalone));
  std::printf("distinct syscalls: event loop %zu (standalone %zu), vCPU %zu\n", loop,
              loop_standalone, vcpu);
  // Firecracker (REFERENCE.md): vmm thread 50, vcpu thread 27.
  EXPECT_LT(loop, 50u);
  EXPECT_LT(loop_standalone, 50u);
  EXPECT_LT(vcpu, 27u);
  for (const SyscallRule& rule : AllowList(ThreadKind::kEventLoop, standalone)) {
    EXPECT_GE(rule.number, 0) << rule.name;
  }
}

TEST(Seccomp, DangerousCallsCarryArgumentChecks) {
  for (ThreadKind kind : {ThreadKind::kEventLoop, ThreadKind::kVcpu}) {
    for (const SyscallRule& rule : AllowList(kind, Options())) {
      if (rule.name == "ioctl" || rule.name == "mmap" || rule.name == "mprotect" ||
          rule.name == "tgkill" || rule.name == "fcntl" || rule.name == "socket") {
        EXPECT_GE(rule.arg, 0) << rule.name << " allowed without an argument check";
      }
      EXPECT_NE(rule.name, "openat");
      EXPECT_NE(rule.name, "open");
      EXPECT_NE(rule.name, "execve");
      EXPECT_NE(rule.name, "ptrace");
    }
  }
}

// Runs `body` in a child under the filter for `kind`; returns its wait
// status and what it wrote to stderr.
int RunFiltered(ThreadKind kind, void (*body)(), std::string* err) {
  int pipe_fds[2];
  EXPECT_EQ(::pipe(pipe_fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], 2);
    if (!InstallViolationReporter().ok()) ::_exit(100);
    PrepareForSeccomp();
    if (!InstallFilter(kind, Options()).ok()) ::_exit(101);
    body();
    ::syscall(SYS_exit_group, 0);
  }
  ::close(pipe_fds[1]);
  char buf[256];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0) err->append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(Seccomp, ForbiddenCallIsReportedAndKillsWithSigsys) {
  std::string err;
  int status = RunFiltered(
      ThreadKind::kVcpu, [] { ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY); }, &err);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status << " " << err;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  EXPECT_TRUE(err.rfind("hearth-vmm: bad syscall " + std::to_string(SYS_openat) + " at 0x", 0) == 0)
      << err;
}

TEST(Seccomp, ArgumentChecksBite) {
  std::string err;
  // Executable memory is refused even though mmap is allowed.
  int status = RunFiltered(
      ThreadKind::kEventLoop,
      [] {
        ::syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                  0);
      },
      &err);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  err.clear();
  // An ioctl request not on the list.
  status = RunFiltered(
      ThreadKind::kVcpu, [] { ::syscall(SYS_ioctl, 0, 0x5401 /* TCGETS */, 0); }, &err);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
}

TEST(Seccomp, AllowedCallsWorkAndClone3SaysEnosys) {
  std::string err;
  int status = RunFiltered(
      ThreadKind::kEventLoop,
      [] {
        void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) ::syscall(SYS_exit_group, 1);
        ::munmap(p, 4096);
        if (::syscall(SYS_clone3, nullptr, 0) != -1 || errno != ENOSYS)
          ::syscall(SYS_exit_group, 2);
        const char text[] = "still alive\n";
        ::syscall(SYS_write, 2, text, sizeof(text) - 1);
      },
      &err);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  EXPECT_EQ(err, "still alive\n");
}

}  // namespace
}  // namespace hearth::vmm
