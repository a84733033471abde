#include "tests/testing/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cgroup_mounts.h"
#include "grpcpp/grpcpp.h"
#include "tests/testing/host.h"

extern char** environ;

namespace hearth::testing {

constexpr char kCgroupParentPrefix[] = "hearth-test-";

std::vector<std::string> Agent::TestCgroups(const std::string& child) {
  std::vector<std::string> dirs;
  absl::StatusOr<std::string> mounts = ReadFile("/proc/self/mounts");
  if (!mounts.ok()) return dirs;
  for (const CgroupMount& mount : ParseCgroupMounts(*mounts)) {
    std::string dir = absl::StrCat(mount.path, "/", kCgroupParentPrefix, ::getpid());
    if (!child.empty()) absl::StrAppend(&dir, "/", child);
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0) dirs.push_back(dir);
  }
  return dirs;
}

bool ProcessAlive(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

std::set<pid_t> ProcessesOf(const std::string& exe) {
  std::set<pid_t> pids;
  for (const std::string& name : DirEntries("/proc")) {
    pid_t pid = std::atoi(name.c_str());
    if (pid <= 0) continue;
    char target[4096];
    ssize_t n = ::readlink(absl::StrCat("/proc/", pid, "/exe").c_str(), target, sizeof(target));
    if (n > 0 && std::string(target, static_cast<size_t>(n)) == exe && ProcessAlive(pid)) {
      pids.insert(pid);
    }
  }
  return pids;
}

std::set<std::string> DirEntries(const std::string& dir) {
  std::set<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.insert(name);
    }
    ::closedir(d);
  }
  return names;
}

absl::StatusOr<std::string> InstallFakeVmm(const std::string& dir) {
  absl::StatusOr<std::string> binary = ReadFile(Runfile("tests/fake-vmm"));
  if (!binary.ok()) return binary.status();
  const std::string path = dir + "/fake-vmm";
  absl::Status written = WriteFile(path, *binary);
  if (!written.ok()) return written;
  if (::chmod(path.c_str(), 0755) < 0) return absl::InternalError("chmod " + path);
  return path;
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(const std::string& dir,
                                                    const AgentOptions& options) {
  std::unique_ptr<Agent> agent(new Agent());
  agent->dir_ = dir;
  agent->jailed_ = options.jail && IsRoot() && !IsAsanBuild();
  for (const std::string& d : {dir, dir + "/images", dir + "/jail"}) ::mkdir(d.c_str(), 0755);
  std::vector<std::string> argv = options.prefix;
  argv.insert(argv.end(), {
                              Runfile("agent/hearthd"),
                              absl::StrCat("--listen=unix:", agent->socket()),
                              absl::StrCat("--state_dir=", dir, "/state"),
                              absl::StrCat("--run_dir=", dir, "/run"),
                              absl::StrCat("--image_roots=", dir, "/images"),
                              absl::StrCat("--chroot_base_dir=", dir, "/jail"),
                              absl::StrCat("--vmm=", Runfile("vmm/hearth-vmm")),
                              absl::StrCat("--parent_cgroup=", kCgroupParentPrefix, ::getpid()),
                          });
  if (agent->jailed_) {
    argv.push_back(absl::StrCat("--jailer=", Runfile("jailer/hearth-jailer")));
  } else {
    argv.push_back("--no_jail");
  }
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::string log = agent->log();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  int rc = posix_spawnp(&agent->pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("posix_spawn ", args[0], ": errno ", rc));

  // A subchannel of its own: gRPC shares connections between channels to
  // the same target, and one to a previous agent on this socket path may
  // still look connected.
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  agent->channel_ = grpc::CreateCustomChannel(absl::StrCat("unix:", agent->socket()),
                                              grpc::InsecureChannelCredentials(), arguments);
  agent->stub_ = hearth::v1::Hearth::NewStub(agent->channel_);
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    int status;
    if (::waitpid(agent->pid_, &status, WNOHANG) == agent->pid_) {
      agent->pid_ = -1;
      return absl::InternalError(absl::StrCat("hearthd exited at start-up; see ", log));
    }
    // Ready means answering: GetHostInfo succeeds.
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
    context.set_wait_for_ready(true);
    hearth::v1::HostInfo info;
    if (agent->stub_->GetHostInfo(&context, hearth::v1::GetHostInfoRequest(), &info).ok()) {
      return agent;
    }
  }
  return absl::DeadlineExceededError("hearthd did not answer within 30 s");
}

Agent::~Agent() {
  if (pid_ > 0) Stop(SIGKILL);
}

std::unique_ptr<hearth::v1::Hearth::Stub> Agent::NewStub() const {
  return hearth::v1::Hearth::NewStub(channel_);
}

std::string Agent::log() const { return dir_ + "/hearthd.log"; }

int Agent::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, signal);
  absl::Time deadline = absl::Now() + timeout;
  int status = -1;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  pid_ = -1;
  // Fails, harmlessly, while VMs of this or another agent are still there.
  for (const std::string& dir : TestCgroups()) ::rmdir(dir.c_str());
  return status;
}

int Agent::OpenFds() const {
  int n = 0;
  if (DIR* d = ::opendir(absl::StrCat("/proc/", pid_, "/fd").c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}

}  // namespace hearth::testing
