#include "common/epoll.h"

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth {

absl::StatusOr<Epoll> Epoll::Create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return ErrnoStatus("epoll_create1");
  return Epoll(UniqueFd(fd));
}

absl::Status Epoll::Control(int op, int fd, uint32_t events, uint64_t token) const {
  struct epoll_event event = {};
  event.events = events;
  event.data.u64 = token;
  if (::epoll_ctl(fd_.get(), op, fd, &event) < 0) {
    const char* name = op == EPOLL_CTL_ADD ? "ADD" : op == EPOLL_CTL_MOD ? "MOD" : "DEL";
    return ErrnoStatus(absl::StrCat("epoll_ctl(", name, ", fd=", fd, ")"));
  }
  return absl::OkStatus();
}

absl::Status Epoll::Add(int fd, uint32_t events, uint64_t token) const {
  return Control(EPOLL_CTL_ADD, fd, events, token);
}

absl::Status Epoll::Modify(int fd, uint32_t events, uint64_t token) const {
  return Control(EPOLL_CTL_MOD, fd, events, token);
}

absl::Status Epoll::Remove(int fd) const { return Control(EPOLL_CTL_DEL, fd, 0, 0); }

absl::StatusOr<std::vector<Epoll::Event>> Epoll::Wait(int timeout_ms, int max_events) const {
  if (max_events <= 0) {
    return absl::InvalidArgumentError("epoll_wait: max_events must be > 0");
  }
  std::vector<struct epoll_event> raw(static_cast<size_t>(max_events));
  int n = ::epoll_wait(fd_.get(), raw.data(), max_events, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return std::vector<Event>();
    return ErrnoStatus("epoll_wait");
  }
  std::vector<Event> events;
  events.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) events.push_back({raw[i].events, raw[i].data.u64});
  return events;
}

}  // namespace hearth
