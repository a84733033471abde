#include "common/event_fd.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth {

absl::StatusOr<EventFd> EventFd::Create(int flags) {
  int fd = ::eventfd(0, flags | EFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("eventfd");
  return EventFd(UniqueFd(fd));
}

absl::Status EventFd::Write(uint64_t value) const {
  if (value == 0) return absl::InvalidArgumentError("eventfd write of 0");
  ssize_t n = RetryOnEintr([&] { return ::write(fd_.get(), &value, sizeof(value)); });
  if (n < 0) return ErrnoStatus(absl::StrCat("eventfd write fd=", fd_.get()));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> EventFd::Read() const {
  uint64_t value = 0;
  ssize_t n = RetryOnEintr([&] { return ::read(fd_.get(), &value, sizeof(value)); });
  if (n < 0) {
    if (errno == EAGAIN) return 0;
    return ErrnoStatus(absl::StrCat("eventfd read fd=", fd_.get()));
  }
  return value;
}

}  // namespace hearth
