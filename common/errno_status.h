// errno -> absl::Status helpers. Every failing system call becomes a Status
// whose message names the call and its arguments, so logs explain themselves:
//   return ErrnoStatus("KVM_SET_USER_MEMORY_REGION slot=1");
#ifndef HEARTH_COMMON_ERRNO_STATUS_H_
#define HEARTH_COMMON_ERRNO_STATUS_H_

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hearth {

// The Status for the current errno (captured before anything else runs), with
// `what` prefixed to the strerror text.
absl::Status ErrnoStatus(absl::string_view what);

// The Status for an explicit error number (e.g. one returned by pthread_*).
absl::Status ErrnoStatus(int error_number, absl::string_view what);

// Runs `call` again while it fails with EINTR. `call` returns a
// negative value and sets errno on failure, like most system calls.
template <typename Call>
auto RetryOnEintr(Call call) -> decltype(call()) {
  decltype(call()) result;
  do {
    result = call();
  } while (result < 0 && errno == EINTR);
  return result;
}

}  // namespace hearth

#endif  // HEARTH_COMMON_ERRNO_STATUS_H_
