#include "agent/api_metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hearth::agent {

uint64_t ApiMetrics::BucketBoundUs(size_t i) {
  static constexpr uint64_t kSteps[] = {1, 2, 5};
  uint64_t scale = 10;
  for (size_t k = 0; k < i / 3; ++k) scale *= 10;
  return kSteps[i % 3] * scale;
}

uint64_t ApiMetrics::MethodStats::QuantileUs(double q) const {
  if (calls == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(calls) + 0.999999);
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    seen += buckets[i];
    if (seen >= rank) return i + 1 == buckets.size() ? max_us : std::min(BucketBoundUs(i), max_us);
  }
  return max_us;
}

void ApiMetrics::Record(absl::string_view method, absl::StatusCode code, absl::Duration latency) {
  uint64_t us = static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Microseconds(latency)));
  absl::MutexLock lock(&mutex_);
  auto it = methods_.find(method);
  if (it == methods_.end()) it = methods_.emplace(std::string(method), MethodStats()).first;
  MethodStats& stats = it->second;
  ++stats.calls;
  if (code != absl::StatusCode::kOk) ++stats.errors[absl::StatusCodeToString(code)];
  size_t bucket = 0;
  while (bucket + 1 < stats.buckets.size() && us >= BucketBoundUs(bucket)) ++bucket;
  ++stats.buckets[bucket];
  stats.max_us = std::max(stats.max_us, us);
  stats.total_us += us;
}

ApiMetrics::MethodStats ApiMetrics::Get(absl::string_view method) const {
  absl::MutexLock lock(&mutex_);
  auto it = methods_.find(method);
  return it == methods_.end() ? MethodStats() : it->second;
}

std::string ApiMetrics::Json() const {
  absl::MutexLock lock(&mutex_);
  std::vector<std::string> parts;
  for (const auto& [name, stats] : methods_) {
    std::vector<std::string> errors;
    for (const auto& [code, n] : stats.errors) errors.push_back(absl::StrCat("\"", code, "\":", n));
    parts.push_back(
        absl::StrCat("\"", name, "\":{\"calls\":", stats.calls, ",\"errors\":{",
                     absl::StrJoin(errors, ","), "},\"p50_us\":", stats.QuantileUs(0.5),
                     ",\"p99_us\":", stats.QuantileUs(0.99), ",\"max_us\":", stats.max_us,
                     ",\"mean_us\":", stats.total_us / std::max<uint64_t>(1, stats.calls), "}"));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

}  // namespace hearth::agent
