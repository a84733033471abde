// A rate limiter's configuration as plain values: the rate limiter's own
// types, which the devices that hold one (block, net, rng) see. The API's
// hearth.v1.RateLimiter is converted to them in vmm/config
// (RateLimiterFromApi), so nothing below the config layer depends on the
// public API's messages.
#ifndef HEARTH_VMM_RATE_LIMITER_RATE_LIMITER_CONFIG_H_
#define HEARTH_VMM_RATE_LIMITER_RATE_LIMITER_CONFIG_H_

#include <cstdint>

namespace hearth::vmm {

// One token bucket (Firecracker semantics): `size` tokens, refilled
// completely every `refill_time_ms`; `one_time_burst` extra tokens spent
// first and never refilled. size == 0 or refill_time_ms == 0: no limit.
struct TokenBucketConfig {
  uint64_t size = 0;
  uint64_t one_time_burst = 0;
  uint64_t refill_time_ms = 0;
  bool enabled() const { return size > 0 && refill_time_ms > 0; }
};

struct RateLimiterConfig {
  TokenBucketConfig bandwidth;  // bytes
  TokenBucketConfig ops;        // requests
};

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_RATE_LIMITER_RATE_LIMITER_CONFIG_H_
