#include "common/event_loop.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

TEST(EventLoop, DispatchesToTheRightHandler) {
  auto loop = *EventLoop::Create();
  EventFd a = *EventFd::Create();
  EventFd b = *EventFd::Create();
  int a_calls = 0, b_calls = 0;
  ASSERT_TRUE(loop->Add(a.fd(),
                        [&](uint32_t) {
                          ++a_calls;
                          (void)a.Read();
                        })
                  .ok());
  ASSERT_TRUE(loop->Add(b.fd(),
                        [&](uint32_t) {
                          ++b_calls;
                          (void)b.Read();
                        })
                  .ok());
  EXPECT_EQ(loop->Add(a.fd(), [](uint32_t) {}).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(b.Write().ok());
  ASSERT_TRUE(loop->RunOnce(1000).ok());
  EXPECT_EQ(a_calls, 0);
  EXPECT_EQ(b_calls, 1);
}

TEST(EventLoop, HandlerCanRemoveItselfAndStopTheLoop) {
  auto loop = *EventLoop::Create();
  EventFd a = *EventFd::Create();
  int calls = 0;
  ASSERT_TRUE(loop->Add(a.fd(),
                        [&](uint32_t) {
                          ++calls;
                          EXPECT_TRUE(loop->Remove(a.fd()).ok());
                          loop->Stop();
                        })
                  .ok());
  ASSERT_TRUE(a.Write().ok());
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(loop->Watching(a.fd()));
  EXPECT_EQ(loop->Remove(a.fd()).code(), absl::StatusCode::kNotFound);
}

TEST(EventLoop, UnwatchDropsTheHandlerAndIgnoresWhatIsNotWatched) {
  auto loop = *EventLoop::Create();
  EventFd a = *EventFd::Create();
  int calls = 0;
  ASSERT_TRUE(loop->Add(a.fd(), [&](uint32_t) { ++calls; }).ok());
  loop->Unwatch(a.fd());
  EXPECT_FALSE(loop->Watching(a.fd()));
  ASSERT_TRUE(a.Write().ok());
  ASSERT_TRUE(loop->RunOnce(0).ok());
  EXPECT_EQ(calls, 0);
  loop->Unwatch(a.fd());  // not watched: nothing to do
  // An fd closed while watched (epoll already dropped it): the handler
  // still goes.
  int closed_fd = -1;
  {
    EventFd b = *EventFd::Create();
    closed_fd = b.fd();
    ASSERT_TRUE(loop->Add(closed_fd, [&](uint32_t) { ++calls; }).ok());
  }
  loop->Unwatch(closed_fd);
  EXPECT_FALSE(loop->Watching(closed_fd));
}

TEST(EventLoop, StopFromAnotherThreadWakesRun) {
  auto loop = *EventLoop::Create();
  std::thread stopper([&] { loop->Stop(); });
  ASSERT_TRUE(loop->Run().ok());
  stopper.join();
  EXPECT_TRUE(loop->stopped());
}

TEST(EventLoop, PostedTasksRunOnTheLoopInOrder) {
  auto loop = *EventLoop::Create();
  std::vector<int> order;
  std::thread poster([&] {
    loop->Post([&] { order.push_back(1); });
    loop->Post([&] {
      order.push_back(2);
      loop->Stop();
    });
  });
  ASSERT_TRUE(loop->Run().ok());
  poster.join();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// A task posted by a task must wake the loop by itself (the agent's
// supervisor chains its work this way). Without that, the second
// RunOnce(-1) would sleep until the watchdog's Post, 10 s later.
TEST(EventLoop, TaskPostedByATaskWakesTheLoop) {
  auto loop = *EventLoop::Create();
  bool second = false;
  loop->Post([&] { loop->Post([&] { second = true; }); });
  ASSERT_TRUE(loop->RunOnce(-1).ok());  // runs the first task
  absl::Notification woke;
  std::atomic<bool> watchdog_fired{false};
  std::thread watchdog([&] {
    if (!woke.WaitForNotificationWithTimeout(absl::Seconds(10))) {
      watchdog_fired = true;
      loop->Post([] {});
    }
  });
  ASSERT_TRUE(loop->RunOnce(-1).ok());
  woke.Notify();
  watchdog.join();
  EXPECT_TRUE(second);
  EXPECT_FALSE(watchdog_fired) << "the loop slept through a task posted by a task";
}

// RunPosted (a handler finishing posted work before it goes on) runs what
// was posted, in order, including what those tasks post, and nothing else.
TEST(EventLoop, RunPostedRunsPostedTasksAndTheirs) {
  auto loop = *EventLoop::Create();
  std::vector<int> order;
  loop->Post([&] {
    order.push_back(1);
    loop->Post([&] { order.push_back(3); });
  });
  loop->Post([&] { order.push_back(2); });
  loop->RunPosted();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  loop->RunPosted();  // nothing left
  EXPECT_EQ(order.size(), 3u);
}

}  // namespace
}  // namespace hearth
