#include "common/timer_fd.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include "common/errno_status.h"

namespace hearth {

absl::StatusOr<TimerFd> TimerFd::Create() {
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("timerfd_create");
  return TimerFd(UniqueFd(fd));
}

absl::Status TimerFd::Arm(absl::Duration delay, absl::Duration interval) const {
  if (delay <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timerfd delay must be positive");
  }
  struct itimerspec spec = {};
  spec.it_value = absl::ToTimespec(delay);
  spec.it_interval = absl::ToTimespec(interval);
  if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) < 0) {
    return ErrnoStatus("timerfd_settime");
  }
  return absl::OkStatus();
}

absl::Status TimerFd::Disarm() const {
  struct itimerspec spec = {};
  if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) < 0) {
    return ErrnoStatus("timerfd_settime(disarm)");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> TimerFd::Read() const {
  uint64_t expirations = 0;
  ssize_t n = RetryOnEintr([&] { return ::read(fd_.get(), &expirations, sizeof(expirations)); });
  if (n < 0) {
    if (errno == EAGAIN) return 0;
    return ErrnoStatus("timerfd read");
  }
  return expirations;
}

}  // namespace hearth
