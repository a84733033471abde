#include "vmm/rate_limiter/rate_limiter.h"

#include <poll.h>

#include "gtest/gtest.h"

namespace hearth::vmm {
namespace {

struct FakeClock {
  int64_t now = 1000;
  Clock clock() {
    return [this] { return now; };
  }
  void AdvanceMs(int64_t ms) { now += ms * 1000000; }
};

TEST(TokenBucket, StartsFullAndRefillsOverTime) {
  FakeClock t;
  TokenBucket bucket({1000, 0, 100}, t.clock());  // 1000 tokens / 100 ms
  EXPECT_EQ(bucket.Reduce(1000, nullptr), TokenBucket::Reduction::kSuccess);
  EXPECT_EQ(bucket.Reduce(1, nullptr), TokenBucket::Reduction::kFailure);
  t.AdvanceMs(50);
  EXPECT_EQ(bucket.Reduce(500, nullptr), TokenBucket::Reduction::kSuccess);
  EXPECT_EQ(bucket.Reduce(10, nullptr), TokenBucket::Reduction::kFailure);
  t.AdvanceMs(1000);  // refills to size, never beyond
  EXPECT_EQ(bucket.Reduce(1000, nullptr), TokenBucket::Reduction::kSuccess);
  EXPECT_EQ(bucket.budget(), 0u);
}

TEST(TokenBucket, OneTimeBurstIsSpentFirstAndNeverRefilled) {
  FakeClock t;
  TokenBucket bucket({100, 50, 100}, t.clock());
  EXPECT_EQ(bucket.Reduce(50, nullptr), TokenBucket::Reduction::kSuccess);
  EXPECT_EQ(bucket.budget(), 100u);  // the burst paid for it
  EXPECT_EQ(bucket.one_time_burst(), 0u);
  EXPECT_EQ(bucket.Reduce(120, nullptr), TokenBucket::Reduction::kOverConsumption);
}

TEST(TokenBucket, OversizedRequestIsServedAndReportsTheExcess) {
  FakeClock t;
  TokenBucket bucket({100, 0, 100}, t.clock());
  double ratio = 0;
  EXPECT_EQ(bucket.Reduce(350, &ratio), TokenBucket::Reduction::kOverConsumption);
  EXPECT_DOUBLE_EQ(ratio, 2.5);  // 250 tokens beyond the 100 in the bucket
  EXPECT_EQ(bucket.budget(), 0u);
}

TEST(TokenBucket, FractionalRefillIsNotLost) {
  FakeClock t;
  TokenBucket bucket({3, 0, 1}, t.clock());  // 3 tokens per ms
  ASSERT_EQ(bucket.Reduce(3, nullptr), TokenBucket::Reduction::kSuccess);
  // 0.4 ms earns 1.2 tokens: 1 now, and the 0.2 carries over.
  t.now += 400000;
  EXPECT_EQ(bucket.Reduce(1, nullptr), TokenBucket::Reduction::kSuccess);
  EXPECT_EQ(bucket.Reduce(1, nullptr), TokenBucket::Reduction::kFailure);
  t.now += 300000;  // 0.2 + 0.9 = 1.1 tokens
  EXPECT_EQ(bucket.Reduce(1, nullptr), TokenBucket::Reduction::kSuccess);
}

TEST(RateLimiter, BlocksAndUnblocksThroughItsTimer) {
  FakeClock t;
  RateLimiterConfig config;
  config.ops = {2, 0, 1000};
  auto limiter = *RateLimiter::Create(config, t.clock());
  EXPECT_TRUE(limiter->Consume(1, RateLimiter::TokenType::kOps));
  EXPECT_TRUE(limiter->Consume(1, RateLimiter::TokenType::kOps));
  EXPECT_FALSE(limiter->Consume(1, RateLimiter::TokenType::kOps));
  EXPECT_TRUE(limiter->blocked());
  EXPECT_EQ(limiter->throttled_events(), 1u);
  // Bytes are not limited, but a blocked limiter blocks everything.
  EXPECT_FALSE(limiter->Consume(1 << 20, RateLimiter::TokenType::kBytes));
  struct pollfd pfd = {limiter->timer_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 2000), 1);  // the 100 ms retry timer fired
  EXPECT_TRUE(limiter->OnTimer());
  EXPECT_FALSE(limiter->blocked());
  t.AdvanceMs(1000);
  EXPECT_TRUE(limiter->Consume(1, RateLimiter::TokenType::kOps));
}

TEST(RateLimiter, RequestsTakeBothBucketsOrNeither) {
  FakeClock t;
  RateLimiterConfig config;
  config.ops = {10, 0, 1000};
  config.bandwidth = {100, 0, 1000};
  auto limiter = *RateLimiter::Create(config, t.clock());
  EXPECT_TRUE(limiter->ConsumeRequest(60));
  EXPECT_FALSE(limiter->ConsumeRequest(60));  // bytes short: ops refunded
  EXPECT_EQ(limiter->ops()->budget(), 9u);
}

TEST(RateLimiter, DisabledBucketsDoNotLimitAndUpdateApplies) {
  FakeClock t;
  auto limiter = *RateLimiter::Create(RateLimiterConfig(), t.clock());
  EXPECT_FALSE(limiter->limits());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter->ConsumeRequest(1 << 20));
  RateLimiterConfig tight;
  tight.bandwidth = {10, 0, 1000};
  limiter->Update(tight);
  EXPECT_TRUE(limiter->limits());
  EXPECT_FALSE(limiter->ConsumeRequest(5) && limiter->ConsumeRequest(6));
  limiter->Update(RateLimiterConfig());  // lifting the limit unblocks
  EXPECT_FALSE(limiter->blocked());
  EXPECT_TRUE(limiter->ConsumeRequest(1 << 20));
}

// Watch serves the timer on an event loop only for a limiter that limits,
// once however often it is called, and calls back when the timer unblocks.
TEST(RateLimiter, WatchServesTheTimerOnTheLoop) {
  FakeClock t;
  auto loop = *EventLoop::Create();
  auto limiter = *RateLimiter::Create(RateLimiterConfig(), t.clock());
  int unblocked = 0;
  ASSERT_TRUE(limiter->Watch(loop.get(), [&] { ++unblocked; }).ok());
  EXPECT_FALSE(loop->Watching(limiter->timer_fd())) << "no limit, no timer";
  RateLimiterConfig config;
  config.ops = {1, 0, 1000};
  limiter->Update(config);
  ASSERT_TRUE(limiter->Watch(loop.get(), [&] { ++unblocked; }).ok());
  ASSERT_TRUE(limiter->Watch(loop.get(), [&] { ++unblocked; }).ok());
  EXPECT_TRUE(loop->Watching(limiter->timer_fd()));
  EXPECT_TRUE(limiter->Consume(1, RateLimiter::TokenType::kOps));
  EXPECT_FALSE(limiter->Consume(1, RateLimiter::TokenType::kOps));
  for (int i = 0; i < 40 && unblocked == 0; ++i) ASSERT_TRUE(loop->RunOnce(50).ok());
  EXPECT_EQ(unblocked, 1);
  limiter->Unwatch(loop.get());
  limiter->Unwatch(loop.get());
  EXPECT_FALSE(loop->Watching(limiter->timer_fd()));
}

}  // namespace
}  // namespace hearth::vmm
