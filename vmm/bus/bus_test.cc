#include "vmm/bus/bus.h"

#include <vector>

#include "gtest/gtest.h"

namespace hearth::bus {
namespace {

class RecordingDevice : public BusDevice {
 public:
  void Read(uint64_t offset, absl::Span<uint8_t> data) override {
    last_offset = offset;
    for (auto& b : data) b = 0xab;
  }
  void Write(uint64_t offset, absl::Span<const uint8_t> data) override {
    last_offset = offset;
    written.assign(data.begin(), data.end());
  }
  uint64_t last_offset = ~0ull;
  std::vector<uint8_t> written;
};

TEST(Bus, DispatchesWithRelativeOffsets) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Insert(a, 0x3f8, 8).ok());
  ASSERT_TRUE(bus.Insert(b, 0x400, 0x10).ok());
  uint8_t byte = 0;
  ASSERT_TRUE(bus.Read(0x3fd, absl::MakeSpan(&byte, 1)));
  EXPECT_EQ(a->last_offset, 5u);
  EXPECT_EQ(byte, 0xab);
  uint8_t word[4] = {1, 2, 3, 4};
  ASSERT_TRUE(bus.Write(0x40c, absl::MakeConstSpan(word, 4)));
  EXPECT_EQ(b->last_offset, 0xcu);
  EXPECT_EQ(b->written.size(), 4u);
}

TEST(Bus, UnmappedAndStraddlingAccessesMiss) {
  Bus bus;
  ASSERT_TRUE(bus.Insert(std::make_shared<RecordingDevice>(), 0x100, 4).ok());
  uint8_t data[4] = {};
  EXPECT_FALSE(bus.Read(0xff, absl::MakeSpan(data, 1)));
  EXPECT_FALSE(bus.Read(0x104, absl::MakeSpan(data, 1)));
  EXPECT_FALSE(bus.Read(0x102, absl::MakeSpan(data, 4)));  // runs off the end
  EXPECT_TRUE(bus.Read(0x100, absl::MakeSpan(data, 4)));
}

TEST(Bus, RejectsOverlapsAndEmptyRanges) {
  Bus bus;
  auto dev = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.Insert(dev, 0x1000, 0x100).ok());
  EXPECT_EQ(bus.Insert(dev, 0x10ff, 1).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Insert(dev, 0xf00, 0x101).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Insert(dev, 0x1050, 0x10).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(bus.Insert(dev, 0xf00, 0x100).ok());   // adjacent below
  EXPECT_TRUE(bus.Insert(dev, 0x1100, 0x100).ok());  // adjacent above
  EXPECT_EQ(bus.Insert(dev, 0x5000, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bus.Insert(dev, ~0ull - 1, 4).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hearth::bus
