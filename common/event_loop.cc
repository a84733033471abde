#include "common/event_loop.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hearth {
namespace {
// Tokens are fds; the wakeup eventfd is told apart by this token.
constexpr uint64_t kWakeupToken = ~0ull;
}  // namespace

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  ASSIGN_OR_RETURN(Epoll epoll, Epoll::Create());
  ASSIGN_OR_RETURN(EventFd wakeup, EventFd::Create());
  RETURN_IF_ERROR(epoll.Add(wakeup.fd(), EPOLLIN, kWakeupToken));
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll), std::move(wakeup)));
}

absl::Status EventLoop::Add(int fd, Handler handler, uint32_t events) {
  if (handlers_.count(fd) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("event loop already watches fd ", fd));
  }
  RETURN_IF_ERROR(epoll_.Add(fd, events, static_cast<uint64_t>(fd)));
  handlers_[fd] = std::make_shared<Handler>(std::move(handler));
  return absl::OkStatus();
}

absl::Status EventLoop::Remove(int fd) {
  if (handlers_.erase(fd) == 0) {
    return absl::NotFoundError(absl::StrCat("event loop does not watch fd ", fd));
  }
  return epoll_.Remove(fd);
}

void EventLoop::Unwatch(int fd) {
  if (handlers_.erase(fd) == 0) return;
  // EPOLL_CTL_DEL of a registered fd fails only once the fd is closed, and
  // closing it already took it out of the epoll set: nothing is left to do.
  (void)epoll_.Remove(fd);
}

absl::Status EventLoop::Modify(int fd, uint32_t events) {
  if (handlers_.count(fd) == 0) {
    return absl::NotFoundError(absl::StrCat("event loop does not watch fd ", fd));
  }
  return epoll_.Modify(fd, events, static_cast<uint64_t>(fd));
}

absl::Status EventLoop::RunOnce(int timeout_ms) {
  ASSIGN_OR_RETURN(std::vector<Epoll::Event> events, epoll_.Wait(timeout_ms, 64));
  // Consume the wake-up before taking the tasks: a task posted from here on
  // (by another thread, or by one of these tasks) writes the eventfd again
  // and wakes the next RunOnce.
  for (const Epoll::Event& event : events) {
    // Only the wake-up matters, not the count; EAGAIN means already drained.
    if (event.token == kWakeupToken) (void)wakeup_.Read();
  }
  // Posted tasks first: a device activation must run before the queue
  // notification that raced with it.
  TakeAndRunTasks();
  for (const Epoll::Event& event : events) {
    if (event.token == kWakeupToken) continue;
    auto it = handlers_.find(static_cast<int>(event.token));
    if (it == handlers_.end()) continue;  // removed by an earlier handler
    std::shared_ptr<Handler> handler = it->second;
    (*handler)(event.events);
    if (stopped_) break;
  }
  return absl::OkStatus();
}

void EventLoop::TakeAndRunTasks() {
  std::vector<std::function<void()>> tasks;
  {
    absl::MutexLock lock(&tasks_mutex_);
    tasks.swap(tasks_);
  }
  for (auto& task : tasks) task();
}

void EventLoop::RunPosted() {
  for (;;) {
    {
      absl::MutexLock lock(&tasks_mutex_);
      if (tasks_.empty()) return;
    }
    TakeAndRunTasks();
  }
}

absl::Status EventLoop::Run() {
  while (!stopped_) RETURN_IF_ERROR(RunOnce(-1));
  return absl::OkStatus();
}

void EventLoop::Post(std::function<void()> task) {
  {
    absl::MutexLock lock(&tasks_mutex_);
    tasks_.push_back(std::move(task));
  }
  // Cannot fail: the counter would have to reach 2^64 - 2 without a read.
  (void)wakeup_.Write(1);
}

void EventLoop::Stop() {
  stopped_ = true;
  // Cannot fail: the counter would have to reach 2^64 - 2 without a read.
  (void)wakeup_.Write(1);
}

}  // namespace hearth
