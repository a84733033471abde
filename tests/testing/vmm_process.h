// A hearth-vmm (or any program) running in the background of a test: its
// stdout is collected as it arrives so the test can wait for a line before
// acting (connect a vsock peer, SIGKILL the VMM after a flush, ...).
#ifndef HEARTH_TESTS_TESTING_VMM_PROCESS_H_
#define HEARTH_TESTS_TESTING_VMM_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {

class BackgroundProcess {
 public:
  static absl::StatusOr<BackgroundProcess> Start(const std::vector<std::string>& argv);
  BackgroundProcess(BackgroundProcess&& other) noexcept;
  BackgroundProcess& operator=(BackgroundProcess&&) = delete;
  ~BackgroundProcess();  // kills and reaps if still running

  // Reads stdout until it contains `text` (true) or `timeout` passes or the
  // process closes stdout (false).
  bool WaitForOutput(const std::string& text, absl::Duration timeout);
  // Sends `signal` to the process.
  void Kill(int signal);
  // Waits for exit (killing it after `timeout`), collecting the rest of its
  // output.
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

// hearth-vmm on `config_json` (written to a temporary file), in the
// background; `prefix` (e.g. {"ip", "netns", "exec", "ns"}) goes first.
absl::StatusOr<BackgroundProcess> StartVmm(const std::string& config_json,
                                           const std::vector<std::string>& prefix = {});

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_VMM_PROCESS_H_
