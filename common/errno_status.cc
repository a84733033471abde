#include "common/errno_status.h"

namespace hearth {

absl::Status ErrnoStatus(absl::string_view what) { return ErrnoStatus(errno, what); }

absl::Status ErrnoStatus(int error_number, absl::string_view what) {
  // Message: "<what>: <strerror>", code mapped from the errno (ENOENT ->
  // NOT_FOUND, EACCES -> PERMISSION_DENIED, ...).
  return absl::ErrnoToStatus(error_number, what);
}

}  // namespace hearth
