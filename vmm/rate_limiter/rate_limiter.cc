#include "vmm/rate_limiter/rate_limiter.h"

#include <time.h>

#include <algorithm>
#include <cmath>

#include "common/status_macros.h"

namespace hearth::vmm {

Clock MonotonicClock() {
  return [] {
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
  };
}

TokenBucket::TokenBucket(const TokenBucketConfig& config, Clock clock)
    : size_(config.size),
      one_time_burst_(config.one_time_burst),
      refill_time_ms_(config.refill_time_ms),
      budget_(config.size),
      last_update_ns_(clock()),
      clock_(std::move(clock)) {}

void TokenBucket::AutoReplenish() {
  const int64_t now = clock_();
  const int64_t elapsed = now - last_update_ns_;
  if (elapsed <= 0) return;
  const long double refill_ns = static_cast<long double>(refill_time_ms_) * 1e6L;
  // Whole tokens earned since the last update; the time they correspond to
  // is what moves last_update forward, so fractions are not lost.
  const uint64_t earned =
      static_cast<uint64_t>(static_cast<long double>(elapsed) * size_ / refill_ns);
  if (earned == 0) return;
  budget_ = std::min(size_, budget_ + earned);
  if (budget_ == size_) {
    last_update_ns_ = now;
  } else {
    last_update_ns_ += static_cast<int64_t>(earned * refill_ns / size_);
  }
}

TokenBucket::Reduction TokenBucket::Reduce(uint64_t tokens, double* excess_ratio) {
  if (one_time_burst_ > 0) {
    if (one_time_burst_ >= tokens) {
      one_time_burst_ -= tokens;
      return Reduction::kSuccess;
    }
    tokens -= one_time_burst_;
    one_time_burst_ = 0;
  }
  if (tokens > budget_) {
    AutoReplenish();
    if (tokens > size_) {
      // Larger than the whole bucket: served, at the cost of everything in
      // the bucket plus waiting for the excess to refill.
      tokens -= budget_;
      budget_ = 0;
      last_update_ns_ = clock_();
      if (excess_ratio != nullptr) {
        *excess_ratio = static_cast<double>(tokens) / static_cast<double>(size_);
      }
      return Reduction::kOverConsumption;
    }
    if (tokens > budget_) return Reduction::kFailure;
  }
  budget_ -= tokens;
  return Reduction::kSuccess;
}

void TokenBucket::Replenish(uint64_t tokens) { budget_ = std::min(size_, budget_ + tokens); }

absl::StatusOr<std::unique_ptr<RateLimiter>> RateLimiter::Create(const RateLimiterConfig& config,
                                                                 Clock clock) {
  ASSIGN_OR_RETURN(TimerFd timer, TimerFd::Create());
  std::unique_ptr<RateLimiter> limiter(new RateLimiter(std::move(timer), std::move(clock)));
  limiter->Update(config);
  return limiter;
}

void RateLimiter::Update(const RateLimiterConfig& config) {
  bandwidth_.reset();
  ops_.reset();
  if (config.bandwidth.enabled()) bandwidth_.emplace(config.bandwidth, clock_);
  if (config.ops.enabled()) ops_.emplace(config.ops, clock_);
  if (!limits() && blocked_) {
    // Cannot fail: timerfd_settime refuses only a bad fd or a bad time.
    (void)timer_.Disarm();
    blocked_ = false;
  }
}

void RateLimiter::Block(int64_t ms) {
  blocked_ = true;
  ++throttled_;
  // Cannot fail: timerfd_settime refuses only a bad fd or a bad time, and
  // the delay is at least 1 ms.
  (void)timer_.Arm(absl::Milliseconds(std::max<int64_t>(ms, 1)));
}

bool RateLimiter::Consume(uint64_t tokens, TokenType type) {
  if (blocked_) return false;
  std::optional<TokenBucket>& bucket = type == TokenType::kBytes ? bandwidth_ : ops_;
  if (!bucket.has_value()) return true;
  double ratio = 0;
  switch (bucket->Reduce(tokens, &ratio)) {
    case TokenBucket::Reduction::kSuccess:
      return true;
    case TokenBucket::Reduction::kFailure:
      Block(kRetryMs);
      return false;
    case TokenBucket::Reduction::kOverConsumption:
      Block(static_cast<int64_t>(std::ceil(ratio * bucket->refill_time_ms())));
      return true;
  }
  return true;
}

void RateLimiter::Replenish(uint64_t tokens, TokenType type) {
  std::optional<TokenBucket>& bucket = type == TokenType::kBytes ? bandwidth_ : ops_;
  if (bucket.has_value()) bucket->Replenish(tokens);
}

bool RateLimiter::ConsumeRequest(uint64_t bytes) {
  if (!Consume(1, TokenType::kOps)) return false;
  if (!Consume(bytes, TokenType::kBytes)) {
    Replenish(1, TokenType::kOps);
    return false;
  }
  return true;
}

bool RateLimiter::OnTimer() {
  absl::StatusOr<uint64_t> fired = timer_.Read();
  if (!fired.ok() || *fired == 0) return false;
  blocked_ = false;
  return true;
}

absl::Status RateLimiter::Watch(EventLoop* loop, std::function<void()> on_unblocked) {
  if (!limits() || loop->Watching(timer_fd())) return absl::OkStatus();
  return loop->Add(timer_fd(), [this, on_unblocked = std::move(on_unblocked)](uint32_t) {
    if (OnTimer()) on_unblocked();
  });
}

void RateLimiter::Unwatch(EventLoop* loop) { loop->Unwatch(timer_fd()); }

}  // namespace hearth::vmm
