#include "common/event_loop.h"

#include <thread>

#include "gtest/gtest.h"

namespace hearth {
namespace {

TEST(EventLoop, DispatchesToTheRightHandler) {
  auto loop = *EventLoop::Create();
  EventFd a = *EventFd::Create();
  EventFd b = *EventFd::Create();
  int a_calls = 0, b_calls = 0;
  ASSERT_TRUE(loop->Add(a.fd(), [&](uint32_t) { ++a_calls; (void)a.Read(); }).ok());
  ASSERT_TRUE(loop->Add(b.fd(), [&](uint32_t) { ++b_calls; (void)b.Read(); }).ok());
  EXPECT_EQ(loop->Add(a.fd(), [](uint32_t) {}).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(b.Write().ok());
  ASSERT_TRUE(loop->RunOnce(1000).ok());
  EXPECT_EQ(a_calls, 0);
  EXPECT_EQ(b_calls, 1);
}

TEST(EventLoop, HandlerCanRemoveItselfAndStopTheLoop) {
  auto loop = *EventLoop::Create();
  EventFd a = *EventFd::Create();
  int calls = 0;
  ASSERT_TRUE(loop->Add(a.fd(), [&](uint32_t) {
                ++calls;
                EXPECT_TRUE(loop->Remove(a.fd()).ok());
                loop->Stop();
              }).ok());
  ASSERT_TRUE(a.Write().ok());
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(loop->Watching(a.fd()));
  EXPECT_EQ(loop->Remove(a.fd()).code(), absl::StatusCode::kNotFound);
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

}  // namespace
}  // namespace hearth
