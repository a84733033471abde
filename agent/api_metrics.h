// Counters for hearthd's own API: calls, errors by code and a latency
// histogram per RPC method. Thread-safe; recorded by every gRPC handler
// when it finishes, reported as JSON in the agent's metrics file.
#ifndef HEARTH_AGENT_API_METRICS_H_
#define HEARTH_AGENT_API_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hearth::agent {

class ApiMetrics {
 public:
  void Record(absl::string_view method, absl::StatusCode code, absl::Duration latency);

  struct MethodStats {
    uint64_t calls = 0;
    std::map<std::string, uint64_t> errors;  // by status code name
    // Latency buckets: bucket i counts calls that took < kBucketBoundUs[i]
    // microseconds (and >= the previous bound); the last is unbounded.
    std::array<uint64_t, 24> buckets = {};
    uint64_t max_us = 0;
    uint64_t total_us = 0;
    // An upper bound of the q-quantile (0 < q <= 1) from the buckets.
    uint64_t QuantileUs(double q) const;
  };
  // Bucket upper bounds in microseconds: 10, 20, 50, 100, ... (1-2-5).
  static uint64_t BucketBoundUs(size_t i);

  MethodStats Get(absl::string_view method) const;
  // {"GetVm":{"calls":N,"errors":{"NOT_FOUND":1},"p50_us":..,"p99_us":..,
  //  "max_us":..,"mean_us":..}, ...}
  std::string Json() const;

 private:
  mutable absl::Mutex mutex_;
  std::map<std::string, MethodStats, std::less<>> methods_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_API_METRICS_H_
