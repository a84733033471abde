#include "agent/api_metrics.h"

#include <cctype>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

using absl::StatusCode;

// Just enough of a JSON parser for Json()'s output: objects, strings without
// escapes and unsigned integers. Parses a whole document into `keys` (the
// top-level keys) or fails.
class MiniJson {
 public:
  explicit MiniJson(const std::string& text) : text_(text) {}

  bool ParseTopLevelObject(std::vector<std::string>* keys) {
    return Object(keys) && pos_ == text_.size();
  }

 private:
  bool Object(std::vector<std::string>* keys) {
    if (!Eat('{')) return false;
    if (Eat('}')) return true;
    do {
      std::string key;
      if (!String(&key) || !Eat(':') || !Value()) return false;
      if (keys != nullptr) keys->push_back(key);
    } while (Eat(','));
    return Eat('}');
  }
  bool Value() {
    if (Peek() == '{') return Object(nullptr);
    if (Peek() == '"') return String(nullptr);
    size_t start = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    return pos_ > start;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    size_t end = text_.find('"', pos_);
    if (end == std::string::npos) return false;
    std::string s = text_.substr(pos_, end - pos_);
    if (s.find('\\') != std::string::npos) return false;
    if (out != nullptr) *out = s;
    pos_ = end + 1;
    return true;
  }
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool Eat(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

TEST(ApiMetrics, BucketBoundsGoOneTwoFive) {
  std::vector<uint64_t> bounds;
  for (size_t i = 0; i < 7; ++i) bounds.push_back(ApiMetrics::BucketBoundUs(i));
  EXPECT_EQ(bounds, (std::vector<uint64_t>{10, 20, 50, 100, 200, 500, 1000}));
  EXPECT_EQ(ApiMetrics::BucketBoundUs(22), 200000000u);  // 200 s
}

TEST(ApiMetrics, UnknownMethodHasNoCalls) {
  ApiMetrics metrics;
  ApiMetrics::MethodStats stats = metrics.Get("GetVm");
  EXPECT_EQ(stats.calls, 0u);
  EXPECT_TRUE(stats.errors.empty());
  EXPECT_EQ(stats.QuantileUs(0.5), 0u);
}

TEST(ApiMetrics, RecordCountsCallsPerMethod) {
  ApiMetrics metrics;
  metrics.Record("GetVm", StatusCode::kOk, absl::Microseconds(5));
  metrics.Record("GetVm", StatusCode::kOk, absl::Microseconds(7));
  metrics.Record("ListVms", StatusCode::kOk, absl::Microseconds(9));
  EXPECT_EQ(metrics.Get("GetVm").calls, 2u);
  EXPECT_EQ(metrics.Get("ListVms").calls, 1u);
  EXPECT_EQ(metrics.Get("GetVm").total_us, 12u);
  EXPECT_EQ(metrics.Get("GetVm").max_us, 7u);
}

TEST(ApiMetrics, ErrorsAreCountedByCodeName) {
  ApiMetrics metrics;
  metrics.Record("GetVm", StatusCode::kOk, absl::Microseconds(1));
  metrics.Record("GetVm", StatusCode::kNotFound, absl::Microseconds(1));
  metrics.Record("GetVm", StatusCode::kNotFound, absl::Microseconds(1));
  metrics.Record("GetVm", StatusCode::kInvalidArgument, absl::Microseconds(1));
  ApiMetrics::MethodStats stats = metrics.Get("GetVm");
  EXPECT_EQ(stats.calls, 4u);
  EXPECT_EQ(stats.errors,
            (std::map<std::string, uint64_t>{{"INVALID_ARGUMENT", 1}, {"NOT_FOUND", 2}}));
}

TEST(ApiMetrics, LatencyGoesToTheBucketBelowItsBound) {
  ApiMetrics metrics;
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(9));    // < 10
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(10));   // < 20
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(19));   // < 20
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(150));  // < 200
  ApiMetrics::MethodStats stats = metrics.Get("M");
  EXPECT_EQ(stats.buckets[0], 1u);
  EXPECT_EQ(stats.buckets[1], 2u);
  EXPECT_EQ(stats.buckets[4], 1u);
}

TEST(ApiMetrics, VeryLongCallsGoToTheLastBucket) {
  ApiMetrics metrics;
  metrics.Record("M", StatusCode::kOk, absl::Hours(2));
  ApiMetrics::MethodStats stats = metrics.Get("M");
  EXPECT_EQ(stats.buckets.back(), 1u);
  EXPECT_EQ(stats.max_us, 7200000000u);
  EXPECT_EQ(stats.QuantileUs(0.5), 7200000000u);
}

TEST(ApiMetrics, NegativeLatencyCountsAsZero) {
  ApiMetrics metrics;
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(-5));
  ApiMetrics::MethodStats stats = metrics.Get("M");
  EXPECT_EQ(stats.buckets[0], 1u);
  EXPECT_EQ(stats.total_us, 0u);
}

// 98 fast calls, one at 150 us and one at 3 ms.
ApiMetrics::MethodStats Mixed() {
  ApiMetrics metrics;
  for (int i = 0; i < 98; ++i) metrics.Record("M", StatusCode::kOk, absl::Microseconds(5));
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(150));
  metrics.Record("M", StatusCode::kOk, absl::Milliseconds(3));
  return metrics.Get("M");
}

TEST(ApiMetrics, MedianIsTheUpperBoundOfItsBucket) { EXPECT_EQ(Mixed().QuantileUs(0.5), 10u); }

TEST(ApiMetrics, P99IsTheUpperBoundOfItsBucket) { EXPECT_EQ(Mixed().QuantileUs(0.99), 200u); }

TEST(ApiMetrics, QuantileNeverExceedsTheMaximum) {
  EXPECT_EQ(Mixed().QuantileUs(1.0), 3000u);  // bucket bound 5000
  ApiMetrics metrics;
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(7));
  EXPECT_EQ(metrics.Get("M").QuantileUs(0.5), 7u);
}

TEST(ApiMetrics, QuantilesOfFewCallsRoundUp) {
  ApiMetrics metrics;
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(5));
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(500));
  metrics.Record("M", StatusCode::kOk, absl::Microseconds(600));
  // p50 is the 2nd call, in the bucket below 1000, capped at the maximum.
  EXPECT_EQ(metrics.Get("M").QuantileUs(0.5), 600u);
  EXPECT_EQ(metrics.Get("M").QuantileUs(0.34), 600u);
  EXPECT_EQ(metrics.Get("M").QuantileUs(0.33), 10u);
  EXPECT_EQ(metrics.Get("M").QuantileUs(0.99), 600u);
}

TEST(ApiMetrics, JsonOfNothingIsAnEmptyObject) {
  ApiMetrics metrics;
  std::vector<std::string> keys;
  EXPECT_EQ(metrics.Json(), "{}");
  EXPECT_TRUE(MiniJson(metrics.Json()).ParseTopLevelObject(&keys));
  EXPECT_TRUE(keys.empty());
}

TEST(ApiMetrics, JsonIsAnObjectWithEveryMethod) {
  ApiMetrics metrics;
  metrics.Record("GetVm", StatusCode::kOk, absl::Microseconds(5));
  metrics.Record("GetVm", StatusCode::kNotFound, absl::Microseconds(15));
  metrics.Record("CreateVm", StatusCode::kAlreadyExists, absl::Milliseconds(2));
  metrics.Record("CreateVm", StatusCode::kInvalidArgument, absl::Milliseconds(2));
  metrics.Record("StreamConsole", StatusCode::kCancelled, absl::Seconds(30));
  std::string json = metrics.Json();
  std::vector<std::string> keys;
  ASSERT_TRUE(MiniJson(json).ParseTopLevelObject(&keys)) << json;
  EXPECT_EQ(keys, (std::vector<std::string>{"CreateVm", "GetVm", "StreamConsole"})) << json;
}

TEST(ApiMetrics, JsonHoldsEachMethodsFigures) {
  ApiMetrics metrics;
  metrics.Record("GetVm", StatusCode::kOk, absl::Microseconds(5));
  metrics.Record("GetVm", StatusCode::kNotFound, absl::Microseconds(15));
  EXPECT_EQ(metrics.Json(),
            "{\"GetVm\":{\"calls\":2,\"errors\":{\"NOT_FOUND\":1},\"p50_us\":10,"
            "\"p99_us\":15,\"max_us\":15,\"mean_us\":10}}");
}

TEST(ApiMetrics, ConcurrentRecordsAreAllCounted) {
  ApiMetrics metrics;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < 1000; ++i) {
        metrics.Record(t % 2 ? "A" : "B", i % 10 ? StatusCode::kOk : StatusCode::kInternal,
                       absl::Microseconds(i));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(metrics.Get("A").calls, 2000u);
  EXPECT_EQ(metrics.Get("B").calls, 2000u);
  EXPECT_EQ(metrics.Get("A").errors.at("INTERNAL"), 200u);
}

}  // namespace
}  // namespace hearth::agent
