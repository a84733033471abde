#include "agent/process_launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "api/validate.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"
#include "common/file_io.h"
#include "common/jail_layout.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace state = ::hearth::agent::v1;

namespace {

// Moves `fd` to a number >= 10, so that dup2 onto 0..4 in the child
// cannot clobber another source fd.
absl::StatusOr<UniqueFd> High(UniqueFd fd) {
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10);
  if (moved < 0) return ErrnoStatus("fcntl(F_DUPFD_CLOEXEC)");
  return UniqueFd(moved);
}

// SIGKILL through the pidfd (no pid reuse between a check and the signal),
// else by pid.
absl::Status SendKill(pid_t pid, int pidfd) {
  if (pidfd >= 0 && ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0) {
    return absl::OkStatus();
  }
  if (::kill(pid, SIGKILL) == 0 || errno == ESRCH) return absl::OkStatus();
  return ErrnoStatus(absl::StrCat("kill ", pid));
}

// Ends a VMM the agent cannot drive, so that it does not run on
// unsupervised, and waits (up to 5 s) for it to be gone so that its
// cgroups can be removed. A child of this agent is reaped.
void KillAndWait(pid_t pid, int pidfd, bool child) {
  absl::Status killed = SendKill(pid, pidfd);
  if (!killed.ok()) LOG(ERROR) << "killing VMM " << pid << ": " << killed.message();
  if (child) {
    if (RetryOnEintr([&] { return ::waitpid(pid, nullptr, 0); }) < 0) {
      LOG(ERROR) << "waitpid " << pid << ": " << std::strerror(errno);
    }
    return;
  }
  if (pidfd >= 0) {
    struct pollfd exited = {pidfd, POLLIN, 0};
    if (RetryOnEintr([&] { return ::poll(&exited, 1, 5000); }) <= 0) {
      LOG(WARNING) << "VMM " << pid << " still there 5 s after SIGKILL";
    }
    return;
  }
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (::kill(pid, 0) == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
}

void RemoveTree(const std::string& path) {
  // The run directory holds only plain files and sockets.
  std::vector<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (struct dirent* entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
  }
  for (const std::string& name : names) {
    std::string file = absl::StrCat(path, "/", name);
    if (::unlink(file.c_str()) < 0 && errno != ENOENT) {
      LOG(WARNING) << "unlink " << file << ": " << std::strerror(errno);
    }
  }
  if (::rmdir(path.c_str()) < 0 && errno != ENOENT) {
    LOG(WARNING) << "rmdir " << path << ": " << std::strerror(errno);
  }
}

// Removes an empty directory the VM owned; gone already is fine.
void RemoveDir(const std::string& path) {
  if (::rmdir(path.c_str()) < 0 && errno != ENOENT) {
    LOG(WARNING) << "rmdir " << path << ": " << std::strerror(errno);
  }
}

// The process holding the listening unix socket bound at `path` (not this
// one): /proc/net/unix names the socket's inode, and /proc/<pid>/fd shows
// who holds it. Used to find a VMM the agent spawned but did not record:
// the re-attach listener was created by the agent, so a connection's
// SO_PEERCRED names the agent, not the VMM that holds the socket now.
absl::StatusOr<pid_t> ListenerOwner(const std::string& path) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::set<std::string> inodes;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 8 || fields[7] != path) continue;
    uint32_t flags = 0;
    if (!absl::SimpleHexAtoi(fields[3], &flags) || (flags & 0x10000) == 0) continue;  // listening
    inodes.insert(absl::StrCat("socket:[", fields[6], "]"));
  }
  if (inodes.empty()) return absl::NotFoundError(absl::StrCat("nothing listens on ", path));
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return ErrnoStatus("opendir /proc");
  std::optional<pid_t> owner;
  while (struct dirent* e = ::readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || pid == ::getpid()) continue;
    std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
    DIR* fds = ::opendir(fd_dir.c_str());
    if (fds == nullptr) continue;
    while (struct dirent* f = ::readdir(fds)) {
      char target[64];
      ssize_t n = ::readlinkat(::dirfd(fds), f->d_name, target, sizeof(target) - 1);
      if (n > 0 && inodes.count(std::string(target, static_cast<size_t>(n)))) owner = pid;
    }
    ::closedir(fds);
    if (owner.has_value()) break;
  }
  ::closedir(proc);
  if (!owner.has_value()) return absl::NotFoundError(absl::StrCat("no process holds ", path));
  return *owner;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> CgroupSettings(const api::VmConfig& spec,
                                                                int version,
                                                                uint64_t overhead_mib) {
  uint64_t memory = (hearth::api::MemSizeMib(spec.machine_config()) + overhead_mib) * 1024 * 1024;
  uint32_t vcpus = hearth::api::VcpuCount(spec.machine_config());
  uint64_t quota = uint64_t{vcpus} * 100000;
  uint32_t pids = 64 + 2 * vcpus;
  if (version == 2) {
    return {{"memory.max", absl::StrCat(memory)},
            {"cpu.max", absl::StrCat(quota, " 100000")},
            {"pids.max", absl::StrCat(pids)}};
  }
  return {{"memory.limit_in_bytes", absl::StrCat(memory)},
          {"cpu.cfs_period_us", "100000"},
          {"cpu.cfs_quota_us", absl::StrCat(quota)},
          {"pids.max", absl::StrCat(pids)}};
}

uint64_t ProcessStartTime(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 > text.size()) return 0;
  std::vector<std::string> fields = absl::StrSplit(text.substr(paren + 2), ' ');
  uint64_t start = 0;
  // After the command: state is field 3; starttime is field 22.
  if (fields.size() > 19 && !absl::SimpleAtoi(fields[19], &start)) return 0;
  return start;
}

absl::StatusOr<std::unique_ptr<ProcessLauncher>> ProcessLauncher::Create(LauncherOptions options) {
  for (const std::string& dir : {options.run_dir, options.run_dir + "/vms"}) {
    if (::mkdir(dir.c_str(), 0711) < 0 && errno != EEXIST) {
      return ErrnoStatus(absl::StrCat("mkdir ", dir));
    }
  }
  std::unique_ptr<ProcessLauncher> launcher(new ProcessLauncher(std::move(options)));
  std::ifstream mounts("/proc/self/mounts");
  std::string text((std::istreambuf_iterator<char>(mounts)), std::istreambuf_iterator<char>());
  launcher->cgroup_mounts_ = ParseCgroupMounts(text);
  launcher->cgroup_version_ = launcher->options_.cgroup_version;
  if (launcher->cgroup_version_ == 0) {
    launcher->cgroup_version_ = FindCgroupV1(launcher->cgroup_mounts_, "memory") != nullptr ? 1 : 2;
  }
  return launcher;
}

void ProcessLauncher::Plan(state::VmRecord* record, uint32_t uid) {
  const std::string& vm_id = record->vm().vm_id();
  const bool jailed = !options_.jailer_path.empty();
  record->set_uid(jailed ? uid : ::geteuid());
  record->set_run_dir(absl::StrCat(options_.run_dir, "/vms/", vm_id));
  record->clear_jail_dir();
  if (jailed) {
    record->set_jail_dir(JailDirectory(options_.chroot_base_dir, options_.vmm_path, vm_id));
  }
  record->clear_cgroup_dirs();
  if (!jailed) return;
  for (const HostCgroupSetting& setting : HostCgroupSettings(record->vm().spec(), vm_id)) {
    if (std::find(record->cgroup_dirs().begin(), record->cgroup_dirs().end(), setting.dir) ==
        record->cgroup_dirs().end()) {
      record->add_cgroup_dirs(setting.dir);
    }
  }
}

std::vector<ProcessLauncher::HostCgroupSetting> ProcessLauncher::HostCgroupSettings(
    const api::VmConfig& spec, const std::string& vm_id) const {
  std::vector<HostCgroupSetting> settings;
  for (auto& [file, value] : CgroupSettings(spec, cgroup_version_, options_.vmm_overhead_mib)) {
    absl::StatusOr<std::string> dir =
        CgroupDirectory(cgroup_mounts_, cgroup_version_, file.substr(0, file.find('.')),
                        options_.parent_cgroup, vm_id);
    if (!dir.ok()) continue;  // not on this host: no limit of that kind
    settings.push_back({std::move(file), std::move(value), std::move(*dir)});
  }
  return settings;
}

std::vector<std::string> ProcessLauncher::Argv(const state::VmRecord& record) const {
  const std::string& vm_id = record.vm().vm_id();
  if (options_.jailer_path.empty()) {
    return {options_.vmm_path, "--control_fd=3", "--reattach_fd=4",
            absl::StrCat("--agent_uid=", ::geteuid())};
  }
  std::vector<std::string> argv = {options_.jailer_path,
                                   "--id",
                                   vm_id,
                                   "--exec-file",
                                   options_.vmm_path,
                                   "--uid",
                                   absl::StrCat(record.uid()),
                                   "--gid",
                                   absl::StrCat(record.uid()),
                                   "--chroot-base-dir",
                                   options_.chroot_base_dir,
                                   "--cgroup-version",
                                   absl::StrCat(cgroup_version_),
                                   "--parent-cgroup",
                                   options_.parent_cgroup,
                                   "--keep-fd",
                                   "3",
                                   "--keep-fd",
                                   "4"};
  for (const HostCgroupSetting& setting : HostCgroupSettings(record.vm().spec(), vm_id)) {
    argv.insert(argv.end(), {"--cgroup", absl::StrCat(setting.file, "=", setting.value)});
  }
  argv.insert(argv.end(), {"--", "--control_fd=3", "--reattach_fd=4",
                           absl::StrCat("--agent_uid=", ::geteuid())});
  return argv;
}

absl::StatusOr<VmmProcess> ProcessLauncher::Spawn(state::VmRecord* record) {
  const std::string& run_dir = record->run_dir();
  if (run_dir.empty()) return absl::InternalError("Spawn of a VM that was not planned");
  RemoveTree(run_dir);  // a leftover from an earlier VM with this id
  if (::mkdir(run_dir.c_str(), 0700) < 0) return ErrnoStatus(absl::StrCat("mkdir ", run_dir));

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return ErrnoStatus("control socketpair");
  }
  UniqueFd agent_end(pair[0]);
  ASSIGN_OR_RETURN(UniqueFd vmm_end, High(UniqueFd(pair[1])));
  // The re-attach socket: only this (root) agent may connect (0600, and
  // the VMM checks SO_PEERCRED).
  std::string reattach_path = run_dir + "/control.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSIGN_OR_RETURN(sockaddr_un address, UnixSocketAddress(reattach_path, "reattach socket"));
  if (!listener.valid() ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
      ::chmod(reattach_path.c_str(), 0600) < 0 || ::listen(listener.get(), 4) < 0) {
    return ErrnoStatus(absl::StrCat("reattach socket ", reattach_path));
  }
  ASSIGN_OR_RETURN(listener, High(std::move(listener)));
  std::string log_path = run_dir + "/vmm.log";
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return ErrnoStatus(absl::StrCat("open ", log_path));
  ASSIGN_OR_RETURN(log, High(std::move(log)));

  std::vector<std::string> argv = Argv(*record);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  int rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  for (auto [from, to] : {std::pair{log.get(), 1}, std::pair{log.get(), 2},
                          std::pair{vmm_end.get(), 3}, std::pair{listener.get(), 4}}) {
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, from, to);
  }
  pid_t pid = -1;
  char* envp[] = {nullptr};
  if (rc == 0) rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoStatus(rc, absl::StrCat("spawning ", args[0]));

  VmmProcess process;
  process.pid = pid;
  process.exit_fd.Reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!process.exit_fd.valid()) {
    // Unsupervised, it would run on unseen: end it now.
    absl::Status status = ErrnoStatus("pidfd_open of the VMM");
    KillAndWait(pid, -1, /*child=*/true);
    return status;
  }
  process.control = std::move(agent_end);
  process.start_time = ProcessStartTime(pid);
  record->set_pid(pid);
  record->set_pid_start_time(process.start_time);
  return process;
}

absl::StatusOr<VmmProcess> ProcessLauncher::Reattach(const state::VmRecord& record) {
  std::string path = record.run_dir() + "/control.sock";
  pid_t pid = record.pid();
  bool connected = false;
  UniqueFd socket(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  absl::StatusOr<sockaddr_un> address = UnixSocketAddress(path, "reattach socket");
  if (pid <= 0) {
    // Only the intent was saved: a VMM may or may not have been started.
    // The re-attach socket is bound before the spawn and lives as long as
    // the VMM: a connection finds it, and its holder is the VMM.
    if (record.run_dir().empty() || !address.ok() || !socket.valid() ||
        ::connect(socket.get(), reinterpret_cast<sockaddr*>(&*address), sizeof(*address)) < 0) {
      return absl::NotFoundError("no VMM runs for it (the agent stopped before it recorded one)");
    }
    absl::StatusOr<pid_t> owner = ListenerOwner(path);
    if (!owner.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot identify the VMM at ", path, ": ", owner.status().message()));
    }
    pid = *owner;
    connected = true;  // this connection is the control channel
  } else if (ProcessStartTime(pid) != record.pid_start_time() || ::kill(pid, 0) < 0) {
    return absl::NotFoundError("the VMM exited while the agent was down");
  }
  // The VMM runs. One the agent cannot supervise or reach is ended rather
  // than left running on its own.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  std::string unreachable;
  if (!pidfd.valid()) {
    unreachable = absl::StrCat("cannot supervise the VMM (pid ", pid,
                               "): pidfd_open: ", std::strerror(errno));
  } else if (!address.ok()) {
    unreachable =
        absl::StrCat("cannot re-attach to the VMM (pid ", pid, "): ", address.status().message());
  } else if (!connected &&
             (!socket.valid() || ::connect(socket.get(), reinterpret_cast<sockaddr*>(&*address),
                                           sizeof(*address)) < 0)) {
    unreachable = absl::StrCat("cannot re-attach to the VMM (pid ", pid, ") at ", path, ": ",
                               std::strerror(errno));
  }
  if (!unreachable.empty()) {
    KillAndWait(pid, pidfd.get(), /*child=*/false);
    return absl::UnavailableError(unreachable + "; the VMM was killed");
  }
  VmmProcess process;
  process.pid = pid;
  process.start_time = ProcessStartTime(pid);
  process.exit_fd = std::move(pidfd);
  process.control = std::move(socket);
  process.child = false;
  return process;
}

absl::Status ProcessLauncher::Kill(const VmmProcess& process) {
  return SendKill(process.pid, process.exit_fd.get());
}

std::optional<ExitStatus> ProcessLauncher::Reap(const VmmProcess& process) {
  // After a restart the agent is not the VMM's parent: no status to read.
  if (!process.child) return std::nullopt;
  siginfo_t info = {};
  if (::waitid(P_PIDFD, static_cast<id_t>(process.exit_fd.get()), &info, WEXITED) != 0) {
    LOG(WARNING) << "waitid on VMM " << process.pid << ": " << std::strerror(errno);
    return std::nullopt;
  }
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.exit_code = info.si_status;
  } else {
    status.signal = info.si_status;
  }
  return status;
}

absl::Status ProcessLauncher::ApplyLimits(const state::VmRecord& record,
                                          const api::VmConfig& spec) {
  // The spec may have changed since the jailer set the limits. Each file
  // is in the one hierarchy of the VM's that has its controller.
  for (const auto& [file, value] :
       CgroupSettings(spec, cgroup_version_, options_.vmm_overhead_mib)) {
    for (const std::string& dir : record.cgroup_dirs()) {
      std::string path = absl::StrCat(dir, "/", file);
      if (::access(path.c_str(), F_OK) != 0) continue;
      absl::Status written = WriteControlFile(path, value);
      if (!written.ok()) {
        return absl::Status(written.code(),
                            absl::StrCat("setting the VM's cgroup limits: ", written.message()));
      }
    }
  }
  return absl::OkStatus();
}

void ProcessLauncher::Release(const state::VmRecord& record) {
  // The VMM is gone: its cgroups are empty and its jail unused.
  for (const std::string& dir : record.cgroup_dirs()) RemoveDir(dir);
  if (!record.jail_dir().empty()) {
    // A VMM killed while its jailer ran pivot_root leaves an empty old_root.
    RemoveDir(record.jail_dir() + "/root/old_root");
    RemoveDir(record.jail_dir() + "/root");
    RemoveDir(record.jail_dir());
  }
  if (!record.run_dir().empty()) {
    std::string socket = record.run_dir() + "/control.sock";
    if (::unlink(socket.c_str()) < 0 && errno != ENOENT) {
      LOG(WARNING) << "unlink " << socket << ": " << std::strerror(errno);
    }
  }
}

void ProcessLauncher::RemoveRunDir(const state::VmRecord& record) {
  if (!record.run_dir().empty()) RemoveTree(record.run_dir());
}

std::string ProcessLauncher::LogTail(const state::VmRecord& record) {
  if (record.run_dir().empty()) return "";
  // The run directory is the agent's (0700): its vmm.log is read by path.
  UniqueFd log(::open((record.run_dir() + "/vmm.log").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  return ReadTail(log.get(), 4096);
}

}  // namespace hearth::agent
