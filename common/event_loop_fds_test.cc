#include <unistd.h>

#include "common/epoll.h"
#include "common/event_fd.h"
#include "common/timer_fd.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

TEST(EventFd, CountsWritesAndResetsOnRead) {
  absl::StatusOr<EventFd> efd = EventFd::Create();
  ASSERT_TRUE(efd.ok()) << efd.status();
  EXPECT_EQ(*efd->Read(), 0u);  // non-blocking, nothing pending
  ASSERT_TRUE(efd->Write(2).ok());
  ASSERT_TRUE(efd->Write().ok());
  EXPECT_EQ(*efd->Read(), 3u);
  EXPECT_EQ(*efd->Read(), 0u);
  EXPECT_EQ(efd->Write(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Epoll, ReportsReadyFdWithToken) {
  Epoll epoll = *Epoll::Create();
  EventFd a = *EventFd::Create();
  EventFd b = *EventFd::Create();
  ASSERT_TRUE(epoll.Add(a.fd(), EPOLLIN, 11).ok());
  ASSERT_TRUE(epoll.Add(b.fd(), EPOLLIN, 22).ok());
  EXPECT_TRUE(epoll.Wait(0)->empty());
  ASSERT_TRUE(b.Write().ok());
  std::vector<Epoll::Event> events = *epoll.Wait(1000);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].token, 22u);
  EXPECT_TRUE(events[0].events & EPOLLIN);
  ASSERT_TRUE(epoll.Modify(b.fd(), EPOLLIN, 33).ok());
  EXPECT_EQ((*epoll.Wait(1000))[0].token, 33u);
  ASSERT_TRUE(epoll.Remove(b.fd()).ok());
  EXPECT_TRUE(epoll.Wait(0)->empty());
}

TEST(Epoll, ErrorsNameTheOperation) {
  Epoll epoll = *Epoll::Create();
  absl::Status s = epoll.Add(-1, EPOLLIN, 0);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("epoll_ctl(ADD, fd=-1)"), absl::string_view::npos) << s;
  EventFd a = *EventFd::Create();
  EXPECT_FALSE(epoll.Remove(a.fd()).ok());  // never added
  EXPECT_FALSE(epoll.Wait(0, 0).ok());
}

TEST(TimerFd, FiresAfterDelay) {
  TimerFd timer = *TimerFd::Create();
  EXPECT_EQ(*timer.Read(), 0u);
  ASSERT_TRUE(timer.Arm(absl::Milliseconds(5)).ok());
  Epoll epoll = *Epoll::Create();
  ASSERT_TRUE(epoll.Add(timer.fd(), EPOLLIN, 1).ok());
  ASSERT_EQ(epoll.Wait(5000)->size(), 1u);
  EXPECT_EQ(*timer.Read(), 1u);
  ASSERT_TRUE(timer.Arm(absl::Hours(1)).ok());
  ASSERT_TRUE(timer.Disarm().ok());
  EXPECT_EQ(*timer.Read(), 0u);
  EXPECT_EQ(timer.Arm(absl::ZeroDuration()).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hearth
