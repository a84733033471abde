// TimerFd: a timerfd(2) on CLOCK_MONOTONIC, used by rate limiters to resume a
// throttled queue and by the event loop for periodic work.
#ifndef HEARTH_COMMON_TIMER_FD_H_
#define HEARTH_COMMON_TIMER_FD_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace hearth {

class TimerFd {
 public:
  // A non-blocking, close-on-exec timer.
  static absl::StatusOr<TimerFd> Create();

  // Fires once after `delay` (> 0), then every `interval` if non-zero.
  absl::Status Arm(absl::Duration delay, absl::Duration interval = absl::ZeroDuration()) const;
  absl::Status Disarm() const;
  // The number of expirations since the last read (0 if none).
  absl::StatusOr<uint64_t> Read() const;

  int fd() const { return fd_.get(); }

 private:
  explicit TimerFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace hearth

#endif  // HEARTH_COMMON_TIMER_FD_H_
