// Running a program from a test: arguments, optional stdin bytes, a wall-clock
// limit after which it is killed, and its stdout, stderr and exit status.
#ifndef HEARTH_TESTS_TESTING_SUBPROCESS_H_
#define HEARTH_TESTS_TESTING_SUBPROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hearth::testing {

struct ProcessResult {
  int exit_code = -1;     // valid if !signaled
  int signal = 0;         // the terminating signal, if signaled
  bool signaled = false;
  bool timed_out = false;  // killed by RunProcess after the limit
  std::string out;
  std::string err;
  absl::Duration elapsed;
  std::string Describe() const;  // "exit 0" / "signal 9 (timed out)"
};

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout,
                                         const std::string& stdin_data = "");

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
