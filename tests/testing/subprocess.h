// Running a program from a test: arguments, optional stdin bytes, a wall-clock
// limit after which it is killed, and its stdout, stderr and exit status.
#ifndef HEARTH_TESTS_TESTING_SUBPROCESS_H_
#define HEARTH_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hearth::testing {

struct ProcessResult {
  int exit_code = -1;  // valid if !signaled
  int signal = 0;      // the terminating signal, if signaled
  bool signaled = false;
  bool timed_out = false;  // killed by Wait after the limit
  std::string out;
  std::string err;
  absl::Duration elapsed;
  std::string Describe() const;  // "exit 0" / "signal 9 (timed out)"
};

// A program running in the background of a test: its stdout and stderr are
// collected as they arrive, so the test can wait for a line before acting
// (connect a vsock peer, SIGKILL the VMM after a flush, ...).
class BackgroundProcess {
 public:
  // `stdin_data` (small: it must fit the pipe) is its whole stdin.
  static absl::StatusOr<BackgroundProcess> Start(const std::vector<std::string>& argv,
                                                 const std::string& stdin_data = "");
  BackgroundProcess(BackgroundProcess&& other) noexcept;
  BackgroundProcess& operator=(BackgroundProcess&&) = delete;
  ~BackgroundProcess();  // kills and reaps if still running

  // Reads stdout until it contains `text` (true) or `timeout` passes or the
  // process closes stdout (false).
  bool WaitForOutput(const std::string& text, absl::Duration timeout);
  // Sends `signal` to the process.
  void Kill(int signal);
  // Waits for exit (SIGKILL after `timeout`, then up to 5 s more for its
  // pipes to close), collecting the rest of its output.
  ProcessResult Wait(absl::Duration timeout);

  const std::string& out() const { return out_; }
  pid_t pid() const { return pid_; }

 private:
  BackgroundProcess(pid_t pid, int out_fd, int err_fd)
      : pid_(pid), out_fd_(out_fd), err_fd_(err_fd), start_(absl::Now()) {}
  // Reads what is available (waiting up to `timeout`); false at EOF.
  bool Pump(absl::Duration timeout);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  absl::Time start_;
  std::string out_;
  std::string err_;
  bool reaped_ = false;
};

// Runs a program to the end: BackgroundProcess::Start, then Wait(timeout).
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout,
                                         const std::string& stdin_data = "");

// Absolute path of a runfile (tests run in the runfiles tree), so that it
// still resolves from another working directory or behind `ip netns exec`.
std::string Runfile(const std::string& path);

// A fresh directory under TEST_TMPDIR (or /tmp), removed by the caller.
std::string MakeTempDir(const std::string& prefix);

// A fresh directory directly under /tmp: unix socket paths (an agent's, each
// VM's reattach socket, vsock sockets) hold 108 bytes, and Bazel's
// TEST_TMPDIR is deeper than that. Removed by the caller.
std::string ShortTempDir(const std::string& prefix = "hearth-e2e-");

// A ShortTempDir removed with everything in it when this goes away (kept
// if HEARTH_KEEP_TEST_DIRS is set, for a look after a failure).
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix) : path_(ShortTempDir(prefix)) {}
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
absl::Status WriteFile(const std::string& path, const std::string& contents);
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_SUBPROCESS_H_
