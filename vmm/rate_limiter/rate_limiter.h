// Token-bucket rate limiting for device queues, with Firecracker's semantics
// (src/vmm/src/rate_limiter/mod.rs):
//  * a bucket of `size` tokens starts full and refills continuously, `size`
//    tokens per `refill_time_ms`;
//  * `one_time_burst` extra tokens are spent first and never refilled;
//  * a request larger than the bucket is still served, empties the bucket,
//    and blocks the limiter for as long as refilling the excess takes;
//  * a request that does not fit blocks the limiter for 100 ms, after which
//    the device tries again (the limiter's timerfd wakes the event loop).
// A RateLimiter holds two buckets: bandwidth (bytes) and ops (requests).
// Either may be disabled (size or refill time 0). Updatable at run time.
#ifndef HEARTH_VMM_RATE_LIMITER_RATE_LIMITER_H_
#define HEARTH_VMM_RATE_LIMITER_RATE_LIMITER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "common/event_loop.h"
#include "common/timer_fd.h"
#include "vmm/rate_limiter/rate_limiter_config.h"

namespace hearth::vmm {

// Monotonic nanoseconds; injectable for tests.
using Clock = std::function<int64_t()>;
Clock MonotonicClock();

class TokenBucket {
 public:
  enum class Reduction { kSuccess, kFailure, kOverConsumption };

  TokenBucket(const TokenBucketConfig& config, Clock clock);

  // Takes `tokens`. On kOverConsumption, *excess_ratio is how many bucket
  // sizes beyond the bucket the request was.
  Reduction Reduce(uint64_t tokens, double* excess_ratio);
  // Gives tokens back (a request that could not be completed after all).
  void Replenish(uint64_t tokens);

  uint64_t budget() const { return budget_; }
  uint64_t size() const { return size_; }
  uint64_t refill_time_ms() const { return refill_time_ms_; }
  uint64_t one_time_burst() const { return one_time_burst_; }

 private:
  void AutoReplenish();

  uint64_t size_;
  uint64_t one_time_burst_;
  uint64_t refill_time_ms_;
  uint64_t budget_;
  int64_t last_update_ns_;
  Clock clock_;
};

class RateLimiter {
 public:
  enum class TokenType { kBytes, kOps };
  static constexpr int64_t kRetryMs = 100;

  // A limiter with its own timerfd; buckets configured from `config`.
  static absl::StatusOr<std::unique_ptr<RateLimiter>> Create(const RateLimiterConfig& config,
                                                             Clock clock = MonotonicClock());

  // True if `tokens` may be used now. False means "blocked": the caller
  // stops processing and retries when timer_fd() fires.
  bool Consume(uint64_t tokens, TokenType type);
  // Undoes a successful Consume.
  void Replenish(uint64_t tokens, TokenType type);
  // Both buckets at once (ops: 1, bytes: `bytes`); all or nothing.
  bool ConsumeRequest(uint64_t bytes);

  // Call when timer_fd() is readable; returns true if the limiter unblocked.
  bool OnTimer();
  bool blocked() const { return blocked_; }
  // Replaces the buckets (PATCH at run time); a disabled bucket stops
  // limiting at once.
  void Update(const RateLimiterConfig& config);

  int timer_fd() const { return timer_.fd(); }
  // Serves timer_fd() on `loop` if this limiter limits and it is not
  // served yet: `on_unblocked` runs (on the loop) when the timer unblocks
  // it, so the device processes its queue again. Idempotent.
  absl::Status Watch(EventLoop* loop, std::function<void()> on_unblocked);
  // Stops serving timer_fd() on `loop` (the device is reset). Idempotent.
  void Unwatch(EventLoop* loop);
  bool limits() const { return bandwidth_.has_value() || ops_.has_value(); }
  const std::optional<TokenBucket>& bandwidth() const { return bandwidth_; }
  const std::optional<TokenBucket>& ops() const { return ops_; }
  uint64_t throttled_events() const { return throttled_; }

 private:
  RateLimiter(TimerFd timer, Clock clock) : timer_(std::move(timer)), clock_(std::move(clock)) {}
  void Block(int64_t ms);

  TimerFd timer_;
  Clock clock_;
  std::optional<TokenBucket> bandwidth_;
  std::optional<TokenBucket> ops_;
  bool blocked_ = false;
  uint64_t throttled_ = 0;
};

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_RATE_LIMITER_RATE_LIMITER_H_
