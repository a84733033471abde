// What every Hearth fuzz target shares: a reader that turns the fuzzer's
// bytes into structured choices (never failing: past the end it yields
// zeros), and FUZZ_CHECK for the properties a target asserts beyond "no
// sanitizer report" (a failed check aborts, which libFuzzer and the driver
// report as a crash with the input that caused it).
#ifndef HEARTH_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define HEARTH_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#define FUZZ_CHECK(condition)                                                                 \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

namespace hearth::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  template <typename T>
  T Get() {
    static_assert(std::is_integral_v<T>);
    T value = 0;
    size_t n = std::min(sizeof(T), remaining());
    std::memcpy(&value, data_ + position_, n);
    position_ += n;
    return value;
  }
  bool Bool() { return Get<uint8_t>() & 1; }
  // A value in [low, high].
  uint64_t Range(uint64_t low, uint64_t high) {
    uint64_t span = high - low + 1;
    uint64_t raw = high - low <= 0xff     ? Get<uint8_t>()
                   : high - low <= 0xffff ? Get<uint16_t>()
                                          : Get<uint64_t>();
    return span == 0 ? raw : low + raw % span;
  }
  // Up to `n` bytes (fewer at the end of the input).
  std::string Bytes(size_t n) {
    n = std::min(n, remaining());
    std::string bytes(reinterpret_cast<const char*>(data_ + position_), n);
    position_ += n;
    return bytes;
  }
  std::string Rest() { return Bytes(remaining()); }
  size_t remaining() const { return size_ - position_; }
  bool empty() const { return remaining() == 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
};

}  // namespace hearth::fuzz

#endif  // HEARTH_TESTS_FUZZ_FUZZ_SUPPORT_H_
