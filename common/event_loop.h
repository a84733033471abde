// EventLoop: one thread waiting on many fds with epoll, calling a handler
// per ready fd. The VMM's event-loop thread (control channel, console input,
// virtio queue notifications, rate-limiter timers, vCPU exits) and the
// agent's supervisor (VMM control channels, console sockets, pidfds) each
// run one. Handlers run on the loop's
// thread, one at a time; Add/Remove are for that thread too (or before Run).
#ifndef HEARTH_COMMON_EVENT_LOOP_H_
#define HEARTH_COMMON_EVENT_LOOP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/epoll.h"
#include "common/event_fd.h"

namespace hearth {

class EventLoop {
 public:
  // `events` is the epoll event mask that became ready.
  using Handler = std::function<void(uint32_t events)>;

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();

  // Watches `fd` for `events` (EPOLLIN by default). The fd must stay open
  // until Remove. Fails if `fd` is already watched.
  absl::Status Add(int fd, Handler handler, uint32_t events = EPOLLIN);
  absl::Status Remove(int fd);
  // Stops watching `fd` if it is watched, for callers that are done with
  // it: its handler is dropped at once, so nothing more is dispatched for
  // it whatever epoll says.
  void Unwatch(int fd);
  // Changes the events `fd` is watched for (it must be watched).
  absl::Status Modify(int fd, uint32_t events);
  bool Watching(int fd) const { return handlers_.count(fd) != 0; }

  // Dispatches events until Stop() is called (from a handler or any thread).
  absl::Status Run();
  // Waits at most `timeout_ms` and dispatches what is ready once.
  absl::Status RunOnce(int timeout_ms);
  // Thread-safe: makes Run() return after the current dispatch.
  void Stop();
  // Thread-safe: runs `task` on the loop's thread, before the next batch of
  // fd events, in the order posted.
  void Post(std::function<void()> task);
  // On the loop's thread: runs the tasks posted so far (and any they post)
  // now, e.g. so that a paused VM's device resets and activations are done
  // before its state is saved.
  void RunPosted();
  bool stopped() const { return stopped_; }

 private:
  EventLoop(Epoll epoll, EventFd wakeup) : epoll_(std::move(epoll)), wakeup_(std::move(wakeup)) {}
  void TakeAndRunTasks();

  Epoll epoll_;
  EventFd wakeup_;
  // shared_ptr so a handler can Remove itself (or others) while running.
  std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
  std::atomic<bool> stopped_{false};
  absl::Mutex tasks_mutex_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(tasks_mutex_);
};

}  // namespace hearth

#endif  // HEARTH_COMMON_EVENT_LOOP_H_
