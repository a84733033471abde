#include "tests/testing/vmm_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace hearth::testing {

absl::StatusOr<BackgroundProcess> BackgroundProcess::Start(
    const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) < 0 || ::pipe2(err_pipe, O_CLOEXEC) < 0) {
    return absl::InternalError("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return absl::InternalError(absl::StrCat("posix_spawn ", argv[0], ": errno ", rc));
  }
  return BackgroundProcess(pid, out_pipe[0], err_pipe[0]);
}

BackgroundProcess::BackgroundProcess(BackgroundProcess&& other) noexcept
    : pid_(other.pid_),
      out_fd_(other.out_fd_),
      err_fd_(other.err_fd_),
      start_(other.start_),
      out_(std::move(other.out_)),
      err_(std::move(other.err_)),
      reaped_(other.reaped_) {
  other.pid_ = -1;
  other.out_fd_ = other.err_fd_ = -1;
  other.reaped_ = true;
}

BackgroundProcess::~BackgroundProcess() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

bool BackgroundProcess::Pump(absl::Duration timeout) {
  struct pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  int n = ::poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (n <= 0) return true;
  bool open = false;
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd < 0) continue;
    if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(r));
        open = true;
      } else {
        ::close(fds[i].fd);
        (i == 0 ? out_fd_ : err_fd_) = -1;
      }
    } else {
      open = true;
    }
  }
  return open || out_fd_ >= 0;
}

bool BackgroundProcess::WaitForOutput(const std::string& text, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!absl::StrContains(out_, text)) {
    if (out_fd_ < 0 || absl::Now() >= deadline) return false;
    if (!Pump(std::min(absl::Milliseconds(100), deadline - absl::Now()))) {
      return absl::StrContains(out_, text);
    }
  }
  return true;
}

void BackgroundProcess::Kill(int signal) {
  if (!reaped_ && pid_ > 0) ::kill(pid_, signal);
}

ProcessResult BackgroundProcess::Wait(absl::Duration timeout) {
  ProcessResult result;
  absl::Time deadline = absl::Now() + timeout;
  while (out_fd_ >= 0 || err_fd_ >= 0) {
    if (absl::Now() >= deadline && !result.timed_out) {
      result.timed_out = true;
      ::kill(pid_, SIGKILL);
      deadline = absl::Now() + absl::Seconds(5);
    } else if (absl::Now() >= deadline) {
      break;
    }
    Pump(std::min(absl::Milliseconds(100), deadline - absl::Now()));
  }
  int status = 0;
  if (!reaped_) {
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  result.elapsed = absl::Now() - start_;
  result.out = out_;
  result.err = err_;
  if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.signal = WTERMSIG(status);
  } else {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

absl::StatusOr<BackgroundProcess> StartVmm(const std::string& config_json,
                                           const std::vector<std::string>& prefix) {
  std::string dir = MakeTempDir("vmm-");
  std::string path = dir + "/vm.json";
  absl::Status written = WriteFile(path, config_json);
  if (!written.ok()) return written;
  std::vector<std::string> argv = prefix;
  // Absolute, so that a prefix like `ip netns exec` still finds it.
  char cwd[4096];
  std::string vmm = absl::StrCat(::getcwd(cwd, sizeof(cwd)) ? cwd : ".", "/vmm/hearth-vmm");
  argv.insert(argv.end(), {vmm, "--config=" + path});
  return BackgroundProcess::Start(argv);
}

}  // namespace hearth::testing
