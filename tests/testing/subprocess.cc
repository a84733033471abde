#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace hearth::testing {

std::string ProcessResult::Describe() const {
  if (signaled) {
    return absl::StrCat("signal ", signal, timed_out ? " (timed out)" : "");
  }
  return absl::StrCat("exit ", exit_code);
}

absl::StatusOr<BackgroundProcess> BackgroundProcess::Start(const std::vector<std::string>& argv,
                                                           const std::string& stdin_data) {
  int out_pipe[2], err_pipe[2], in_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) < 0 || ::pipe2(err_pipe, O_CLOEXEC) < 0 ||
      ::pipe2(in_pipe, O_CLOEXEC) < 0) {
    return absl::InternalError("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
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
  ::close(in_pipe[0]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    ::close(in_pipe[1]);
    return absl::InternalError(absl::StrCat("posix_spawn ", argv[0], ": errno ", rc));
  }
  // Small inputs only: the pipe buffer takes them without blocking.
  if (!stdin_data.empty()) {
    (void)!::write(in_pipe[1], stdin_data.data(), stdin_data.size());
  }
  ::close(in_pipe[1]);
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

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout, const std::string& stdin_data) {
  absl::StatusOr<BackgroundProcess> process = BackgroundProcess::Start(argv, stdin_data);
  if (!process.ok()) return process.status();
  return process->Wait(timeout);
}

std::string Runfile(const std::string& path) {
  char cwd[4096];
  return absl::StrCat(::getcwd(cwd, sizeof(cwd)) ? cwd : ".", "/", path);
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base ? base : "/tmp", "/", prefix, "XXXXXX");
  char* dir = ::mkdtemp(pattern.data());
  return dir ? std::string(dir) : std::string();
}

std::string ShortTempDir(const std::string& prefix) {
  std::string pattern = absl::StrCat("/tmp/", prefix, "XXXXXX");
  char* dir = ::mkdtemp(pattern.data());
  return dir ? std::string(dir) : std::string();
}

ScopedTempDir::~ScopedTempDir() {
  if (path_.empty() || std::getenv("HEARTH_KEEP_TEST_DIRS") != nullptr) return;
  // Depth first, without following symbolic links or leaving the file system.
  ::nftw(
      path_.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) {
        ::remove(path);
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

absl::Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace hearth::testing
