#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth {

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) {
    // close(2) must not be retried on EINTR on Linux: the fd is gone either way.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::StatusOr<UniqueFd> UniqueFd::Duplicate() const {
  if (fd_ < 0) {
    return absl::FailedPreconditionError("cannot duplicate an empty UniqueFd");
  }
  int copy = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ErrnoStatus(absl::StrCat("fcntl(F_DUPFD_CLOEXEC, fd=", fd_, ")"));
  return UniqueFd(copy);
}

}  // namespace hearth
