// Epoll: an epoll(7) instance. The VMM's event loop and the agent's
// supervisor wait on one; each registered fd carries a caller-chosen 64-bit
// token that comes back with its events.
#ifndef HEARTH_COMMON_EPOLL_H_
#define HEARTH_COMMON_EPOLL_H_

#include <sys/epoll.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace hearth {

class Epoll {
 public:
  struct Event {
    uint32_t events;  // EPOLLIN, EPOLLOUT, EPOLLHUP, ...
    uint64_t token;
  };

  static absl::StatusOr<Epoll> Create();

  absl::Status Add(int fd, uint32_t events, uint64_t token) const;
  absl::Status Modify(int fd, uint32_t events, uint64_t token) const;
  absl::Status Remove(int fd) const;

  // Waits up to `timeout_ms` (-1: forever) for at most `max_events` events.
  // An interrupted wait (EINTR) returns no events rather than an error.
  absl::StatusOr<std::vector<Event>> Wait(int timeout_ms, int max_events = 32) const;

  int fd() const { return fd_.get(); }

 private:
  explicit Epoll(UniqueFd fd) : fd_(std::move(fd)) {}
  absl::Status Control(int op, int fd, uint32_t events, uint64_t token) const;
  UniqueFd fd_;
};

}  // namespace hearth

#endif  // HEARTH_COMMON_EPOLL_H_
