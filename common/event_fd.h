// EventFd: an eventfd(2) counter, used to wake the VMM's event loop, to carry
// virtio queue notifications (KVM_IOEVENTFD) and interrupts (KVM_IRQFD).
#ifndef HEARTH_COMMON_EVENT_FD_H_
#define HEARTH_COMMON_EVENT_FD_H_

#include <sys/eventfd.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace hearth {

class EventFd {
 public:
  // `flags` are eventfd(2) flags; EFD_CLOEXEC is always added.
  static absl::StatusOr<EventFd> Create(int flags = EFD_NONBLOCK);

  // Adds `value` (> 0) to the counter.
  absl::Status Write(uint64_t value = 1) const;
  // Reads and resets the counter. A non-blocking eventfd whose counter is 0
  // returns 0 rather than an error.
  absl::StatusOr<uint64_t> Read() const;

  int fd() const { return fd_.get(); }

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace hearth

#endif  // HEARTH_COMMON_EVENT_FD_H_
