#include "jailer/jail.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "jailer/cgroup.h"
#include "jailer/filesystem.h"

namespace hearth::jailer {
namespace {

constexpr int kHighestCapability = 63;

absl::Status Step(absl::string_view step, absl::Status status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(step, ": ", status.message()));
}

}  // namespace

absl::Status CloseInheritedFds(const std::vector<int>& keep) {
  std::vector<int> sorted = keep;
  std::sort(sorted.begin(), sorted.end());
  unsigned low = 3;
  for (int fd : sorted) {
    unsigned ufd = static_cast<unsigned>(fd);
    if (ufd > low && ::syscall(SYS_close_range, low, ufd - 1, 0) < 0) {
      return ErrnoStatus("close_range");
    }
    if (ufd >= low) low = ufd + 1;
    // A kept fd must really be open (and stay open across exec).
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) return ErrnoStatus(absl::StrCat("--keep-fd ", fd, " is not open"));
    if (::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) {
      return ErrnoStatus(absl::StrCat("clearing FD_CLOEXEC on ", fd));
    }
  }
  if (::syscall(SYS_close_range, low, ~0u, 0) < 0) return ErrnoStatus("close_range");
  return absl::OkStatus();
}

void ClearEnvironment() { ::clearenv(); }

absl::StatusOr<UniqueFd> OpenExecFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return ErrnoStatus(absl::StrCat("--exec-file ", path));
  if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--exec-file ", path, " is not an executable regular file"));
  }
  int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open --exec-file ", path));
  return UniqueFd(fd);
}

absl::Status CreateJailRoot(const std::string& root) {
  HostFilesystem fs;
  RETURN_IF_ERROR(MakeDirectories(&fs, root, 0755));
  // Left over by an earlier VM with the same id: it must be empty. An empty
  // old_root is what a VMM killed between pivot_root's mkdir and its rmdir
  // leaves (the mounts under it went with its mount namespace): removed.
  std::string old_root = root + "/old_root";
  if (::rmdir(old_root.c_str()) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != ENOTDIR) {
    return ErrnoStatus(absl::StrCat("rmdir ", old_root));
  }
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return ErrnoStatus(absl::StrCat("opendir ", root));
  int entries = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    if (std::string(entry->d_name) != "." && std::string(entry->d_name) != "..") ++entries;
  }
  ::closedir(dir);
  if (entries > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("jail root ", root, " is not empty (another VM with this id?)"));
  }
  if (::chown(root.c_str(), 0, 0) < 0 || ::chmod(root.c_str(), 0755) < 0) {
    return ErrnoStatus(absl::StrCat("chown/chmod ", root));
  }
  return absl::OkStatus();
}

absl::Status JoinNetns(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open --netns ", path));
  if (::setns(fd.get(), CLONE_NEWNET) < 0) return ErrnoStatus(absl::StrCat("setns ", path));
  return absl::OkStatus();
}

absl::Status SetResourceLimits(const std::vector<ResourceLimit>& limits) {
  for (const ResourceLimit& limit : limits) {
    struct rlimit value = {limit.value, limit.value};
    if (::setrlimit(limit.resource, &value) < 0) {
      struct rlimit current = {};
      ::getrlimit(limit.resource, &current);
      return ErrnoStatus(absl::StrCat("--resource-limit ", limit.name, "=", limit.value,
                                      " (hard limit is ", current.rlim_max,
                                      "; raising it needs CAP_SYS_RESOURCE)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenKvm() {
  // Inherited by the VMM (no O_CLOEXEC); the jail has no /dev.
  int fd = ::open("/dev/kvm", O_RDWR);
  if (fd < 0) return ErrnoStatus("open /dev/kvm");
  return UniqueFd(fd);
}

absl::Status EnterJail(const std::string& root) {
  if (::unshare(CLONE_NEWNS) < 0) return ErrnoStatus("unshare(CLONE_NEWNS)");
  // Slave, recursively: mounts made from here on stay in this namespace.
  if (::mount(nullptr, "/", nullptr, MS_SLAVE | MS_REC, nullptr) < 0) {
    return ErrnoStatus("making / a recursive slave mount");
  }
  // pivot_root wants the new root to be a mount point.
  if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    return ErrnoStatus(absl::StrCat("bind-mounting ", root, " onto itself"));
  }
  if (::chdir(root.c_str()) < 0) return ErrnoStatus(absl::StrCat("chdir ", root));
  if (::mkdir("old_root", 0700) < 0 && errno != EEXIST) return ErrnoStatus("mkdir old_root");
  if (::syscall(SYS_pivot_root, ".", "old_root") < 0) return ErrnoStatus("pivot_root");
  if (::chdir("/") < 0) return ErrnoStatus("chdir / in the jail");
  if (::umount2("/old_root", MNT_DETACH) < 0) return ErrnoStatus("detaching the old root");
  if (::rmdir("/old_root") < 0) return ErrnoStatus("rmdir /old_root");
  if (::chroot(".") < 0) return ErrnoStatus("chroot(\".\")");
  // Nothing in the jail is writable, not even by root.
  if (::mount(nullptr, "/", nullptr,
              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
    return ErrnoStatus("remounting the jail root read-only");
  }
  return absl::OkStatus();
}

namespace {

// Leaves the caller's session and terminal; stdin, stdout and stderr become
// /dev/null. A descriptor left pointing at the caller's terminal would keep
// it open for the VM's lifetime, so a failure fails the jailer.
absl::Status Daemonize(const UniqueFd& dev_null) {
  if (::setsid() < 0) return ErrnoStatus("setsid");
  for (int fd = 0; fd < 3; ++fd) {
    if (::dup2(dev_null.get(), fd) < 0) {
      return ErrnoStatus(absl::StrCat("dup2 /dev/null onto fd ", fd));
    }
  }
  return absl::OkStatus();
}

// The VMM is killed when the reaper above it dies: without that, a killed
// jailer would leave an orphaned VMM that nothing reaps or stops.
absl::Status DieWithParent() {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) return ErrnoStatus("PR_SET_PDEATHSIG");
  return absl::OkStatus();
}

}  // namespace

absl::Status NoNewPrivileges() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return ErrnoStatus("PR_SET_NO_NEW_PRIVS");
  return absl::OkStatus();
}

absl::Status DropPrivileges(uid_t uid, gid_t gid) {
  for (int cap = 0; cap <= kHighestCapability; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
      return ErrnoStatus(absl::StrCat("dropping capability ", cap, " from the bounding set"));
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
    return ErrnoStatus("clearing the ambient capabilities");
  }
  // Order matters: groups and gid need privilege, so they go before the uid.
  if (::setgroups(0, nullptr) < 0) return ErrnoStatus("setgroups(0)");
  if (::setresgid(gid, gid, gid) < 0) return ErrnoStatus(absl::StrCat("setresgid ", gid));
  if (::setresuid(uid, uid, uid) < 0) return ErrnoStatus(absl::StrCat("setresuid ", uid));
  // Check rather than trust: nothing may be left.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) < 0) return ErrnoStatus("capget");
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) {
      return absl::InternalError("capabilities remain after dropping privileges");
    }
  }
  uid_t r, e, s;
  gid_t gr, ge, gs;
  if (::getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid ||
      ::getresgid(&gr, &ge, &gs) < 0 || gr != gid || ge != gid || gs != gid) {
    return absl::InternalError("uid/gid did not change as asked");
  }
  return absl::OkStatus();
}

absl::Status ExecVmm(int exec_fd, const std::string& name, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(name.c_str()));
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  ::syscall(SYS_execveat, exec_fd, "", argv.data(), envp, AT_EMPTY_PATH);
  return ErrnoStatus("execveat(--exec-file)");
}

namespace {

pid_t child_pid = -1;

void ForwardSignal(int signal) {
  if (child_pid > 0) ::kill(child_pid, signal);
}

// The jailer as the VMM's reaper: forwards termination requests, waits, and
// ends the way the VMM ended (same code, or the same signal), so its parent
// learns how the VM stopped.
[[noreturn]] void Reap(pid_t child) {
  child_pid = child;
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) ::signal(signal, ForwardSignal);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) ::_exit(127);
  }
  if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
  int signal = WTERMSIG(status);
  ::signal(signal, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signal);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::kill(::getpid(), signal);
  ::_exit(128 + signal);  // for a signal whose default is to ignore
}

}  // namespace

absl::Status RunJailer(const JailerConfig& config) {
  RETURN_IF_ERROR(Step("closing inherited fds", CloseInheritedFds(config.keep_fds)));
  ClearEnvironment();
  absl::StatusOr<UniqueFd> exec_fd = OpenExecFile(config.exec_file);
  RETURN_IF_ERROR(Step("exec file", exec_fd.status()));
  const std::string root = config.JailRoot();
  RETURN_IF_ERROR(Step("creating the jail root", CreateJailRoot(root)));
  if (!config.netns.empty()) RETURN_IF_ERROR(Step("network namespace", JoinNetns(config.netns)));
  RETURN_IF_ERROR(Step("resource limits", SetResourceLimits(config.resource_limits)));
  HostFilesystem fs;
  RETURN_IF_ERROR(Step("cgroups", SetUpCgroups(&fs, config, ::getpid())));
  absl::StatusOr<UniqueFd> kvm = OpenKvm();
  RETURN_IF_ERROR(Step("kvm", kvm.status()));
  // Opened before entering the jail, which has no /dev/null.
  UniqueFd dev_null;
  if (config.daemonize) {
    dev_null = UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!dev_null.valid()) return Step("daemonize", ErrnoStatus("open /dev/null"));
  }
  RETURN_IF_ERROR(Step("entering the jail", EnterJail(root)));
  if (config.new_pid_ns && ::unshare(CLONE_NEWPID) < 0) {
    return ErrnoStatus("new pid namespace: unshare(CLONE_NEWPID)");
  }
  if (config.daemonize) RETURN_IF_ERROR(Step("daemonize", Daemonize(dev_null)));
  if (config.new_pid_ns || config.daemonize) {
    pid_t child = ::fork();
    if (child < 0) return ErrnoStatus("fork");
    if (child > 0) {
      // The reaper keeps no privilege either; if it cannot drop them, the
      // VMM does not run. (This process never returns to main, so it says
      // why itself.)
      absl::Status dropped = NoNewPrivileges();
      if (dropped.ok()) dropped = DropPrivileges(config.uid, config.gid);
      if (!dropped.ok()) {
        std::fprintf(stderr, "hearth-jailer: reaper: %s\n", std::string(dropped.message()).c_str());
        ::kill(child, SIGKILL);
        ::_exit(126);
      }
      Reap(child);
    }
  }
  RETURN_IF_ERROR(Step("no_new_privs", NoNewPrivileges()));
  RETURN_IF_ERROR(Step("dropping privileges", DropPrivileges(config.uid, config.gid)));
  if (config.new_pid_ns || config.daemonize) {
    // Set after setresuid, which clears it.
    RETURN_IF_ERROR(Step("dying with the reaper", DieWithParent()));
  }
  std::vector<std::string> args = config.exec_args;
  args.push_back(absl::StrCat("--kvm_fd=", kvm->Release()));
  return Step("exec", ExecVmm(exec_fd->get(), config.ExecName(), args));
}

}  // namespace hearth::jailer
