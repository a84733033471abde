#include "vmm/memory/guest_memory.h"

#include <atomic>
#include <thread>

#include <cstdint>

#include "gtest/gtest.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::memory {
namespace {

using x86::layout::kGiB;
using x86::layout::kMiB;

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
  EXPECT_EQ(mem.WriteObject<uint8_t>(16 * kMiB, 1).code(), absl::StatusCode::kOutOfRange);
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
// Ring indices: one 16-bit access, never half of a concurrent update (the
// guest here is a thread flipping 0x00ff <-> 0x0100, where a byte-wise
// copy can see 0x0000 or 0x01ff).
TEST(GuestMemory, U16AccessesAreWholeAndChecked) {
  GuestMemory mem = *GuestMemory::CreateAnonymous(1 * kMiB, {});
  ASSERT_TRUE(mem.StoreU16(0x1000, 0xbeef).ok());
  EXPECT_EQ(*mem.LoadU16(0x1000), 0xbeef);
  ASSERT_TRUE(mem.StoreU16(0x2001, 0x1234).ok());  // misaligned still works
  EXPECT_EQ(*mem.LoadU16(0x2001), 0x1234);
  EXPECT_FALSE(mem.LoadU16(1 * kMiB - 1).ok());
  EXPECT_FALSE(mem.StoreU16(1 * kMiB, 1).ok());

  std::atomic<bool> stop{false};
  uint16_t* guest = reinterpret_cast<uint16_t*>(*mem.HostAddress(0x3000, 2));
  std::thread writer([&] {
    for (uint16_t v = 0x00ff; !stop.load(std::memory_order_relaxed); v ^= 0x00ff ^ 0x0100) {
      __atomic_store_n(guest, v, __ATOMIC_RELAXED);
    }
  });
  int torn = 0;
  for (int i = 0; i < 2000000; ++i) {
    uint16_t v = *mem.LoadU16(0x3000);
    if (v != 0x00ff && v != 0x0100 && v != 0) ++torn;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(torn, 0);
}

}  // namespace hearth::memory
