#include "vmm/memory/guest_memory.h"

#include <cstdint>

#include "gtest/gtest.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::memory {
namespace {

using layout::kGiB;
using layout::kMiB;

TEST(GuestMemory, LayoutSplitsAroundTheMmioHole) {
  auto small = GuestMemory::RamLayout(128 * kMiB);
  ASSERT_EQ(small.size(), 1u);
  EXPECT_EQ(small[0].start, 0u);
  EXPECT_EQ(small[0].size, 128 * kMiB);
  auto big = GuestMemory::RamLayout(4 * kGiB);
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(big[0].size, 3 * kGiB);
  EXPECT_EQ(big[1].start, 4 * kGiB);
  EXPECT_EQ(big[1].size, 1 * kGiB);
}

TEST(GuestMemory, ReadWriteRoundTripAndBounds) {
  GuestMemory mem = *GuestMemory::CreateAnonymous(16 * kMiB, {});
  EXPECT_EQ(mem.size(), 16 * kMiB);
  ASSERT_TRUE(mem.WriteObject<uint64_t>(0x1000, 0x1122334455667788).ok());
  EXPECT_EQ(*mem.ReadObject<uint64_t>(0x1000), 0x1122334455667788u);
  // Last byte is fine, one past is not; a range straddling the end is not.
  EXPECT_TRUE(mem.WriteObject<uint8_t>(16 * kMiB - 1, 1).ok());
  EXPECT_EQ(mem.WriteObject<uint8_t>(16 * kMiB, 1).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(mem.ReadObject<uint32_t>(16 * kMiB - 2).ok());
  // Wrapping lengths never pass.
  EXPECT_FALSE(mem.Contains(0x1000, UINT64_MAX));
  EXPECT_FALSE(mem.Contains(UINT64_MAX, 2));
  EXPECT_FALSE(mem.HostAddress(UINT64_MAX - 10, 100).ok());
  EXPECT_TRUE(mem.Contains(0, 16 * kMiB));
}

TEST(GuestMemory, RangesDoNotSpanRegions) {
  std::vector<GuestMemory::Region> regions;
  regions.push_back({0, *MmapRegion::Anonymous(8192, {})});
  regions.push_back({8192, *MmapRegion::Anonymous(4096, {})});
  GuestMemory mem = *GuestMemory::FromRegions(std::move(regions));
  EXPECT_TRUE(mem.Contains(4096, 4096));
  EXPECT_TRUE(mem.Contains(8192, 4096));
  EXPECT_FALSE(mem.Contains(4096, 8192));  // crosses a region boundary
}

TEST(GuestMemory, RejectsBadRegions) {
  EXPECT_FALSE(GuestMemory::CreateAnonymous(0, {}).ok());
  EXPECT_FALSE(GuestMemory::CreateAnonymous(4097, {}).ok());
  std::vector<GuestMemory::Region> overlapping;
  overlapping.push_back({0, *MmapRegion::Anonymous(8192, {})});
  overlapping.push_back({4096, *MmapRegion::Anonymous(4096, {})});
  EXPECT_FALSE(GuestMemory::FromRegions(std::move(overlapping)).ok());
  std::vector<GuestMemory::Region> unaligned;
  unaligned.push_back({100, *MmapRegion::Anonymous(4096, {})});
  EXPECT_FALSE(GuestMemory::FromRegions(std::move(unaligned)).ok());
}

TEST(GuestMemory, ResidentBytesCountsTouchedPages) {
  GuestMemory mem = *GuestMemory::CreateAnonymous(64 * kMiB, {});
  EXPECT_EQ(mem.ResidentBytes(), 0u);
  ASSERT_TRUE(mem.WriteObject<uint8_t>(0, 1).ok());
  ASSERT_TRUE(mem.WriteObject<uint8_t>(10 * kMiB, 1).ok());
  EXPECT_EQ(mem.ResidentBytes(), 2 * 4096u);
}

TEST(GuestMemory, WritesMarkPagesDirtyOnlyWhenTracking) {
  GuestMemory mem = *GuestMemory::CreateAnonymous(1 * kMiB, {});
  ASSERT_TRUE(mem.WriteObject<uint32_t>(5 * 4096, 1).ok());
  mem.MarkDirty(6 * 4096, 1);
  EXPECT_EQ(mem.TakeDirtyBitmap(0)[0], 0u) << "not tracking: nothing marked";
  mem.EnableDirtyTracking();
  ASSERT_TRUE(mem.WriteObject<uint32_t>(3 * 4096 + 4094, 0xffffffff).ok());
  std::vector<uint64_t> bitmap = mem.TakeDirtyBitmap(0);
  ASSERT_EQ(bitmap.size(), 4u);  // 256 pages
  EXPECT_EQ(bitmap[0], (1ull << 3) | (1ull << 4));
  EXPECT_EQ(mem.TakeDirtyBitmap(0)[0], 0u);  // cleared by the read
  mem.MarkDirty(70 * 4096, 1);
  EXPECT_EQ(mem.TakeDirtyBitmap(0)[1], 1ull << 6);
  EXPECT_TRUE(mem.TakeDirtyBitmap(5).empty());
}

}  // namespace
}  // namespace hearth::memory
