#include "vmm/arch/x86_64/mptable.h"

#include <cstring>

#include "gtest/gtest.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::x86 {
namespace {

uint8_t Sum(const std::string& bytes, size_t offset, size_t length) {
  uint8_t sum = 0;
  for (size_t i = offset; i < offset + length; ++i) {
    sum += static_cast<uint8_t>(bytes[i]);
  }
  return sum;
}

uint16_t U16(const std::string& b, size_t off) {
  uint16_t v;
  std::memcpy(&v, b.data() + off, 2);
  return v;
}

TEST(MpTable, ChecksumsAndCountsAreRight) {
  for (uint32_t cpus : {1u, 2u, 32u}) {
    std::string t = *BuildMpTable(layout::kMptableAddress, cpus);
    ASSERT_EQ(t.substr(0, 4), "_MP_");
    EXPECT_EQ(Sum(t, 0, 16), 0) << "floating pointer checksum";
    uint32_t config;
    std::memcpy(&config, t.data() + 4, 4);
    EXPECT_EQ(config, layout::kMptableAddress + 16);
    ASSERT_EQ(t.substr(16, 4), "PCMP");
    uint16_t length = U16(t, 16 + 4);
    EXPECT_EQ(16u + length, t.size());
    EXPECT_EQ(Sum(t, 16, length), 0) << "config table checksum";
    // cpus processors + bus + ioapic + 24 I/O interrupts + 2 local ones.
    EXPECT_EQ(U16(t, 16 + 34), cpus + 1 + 1 + 24 + 2);
    // First processor entry is the enabled BSP with LAPIC id 0.
    EXPECT_EQ(t[16 + 44], 0);      // type processor
    EXPECT_EQ(t[16 + 44 + 1], 0);  // lapic id
    EXPECT_EQ(t[16 + 44 + 3], 3);  // enabled | BSP
    EXPECT_LE(layout::kMptableAddress + t.size(), layout::kHighMemStart);
  }
}

TEST(MpTable, RejectsBadCpuCounts) {
  EXPECT_FALSE(BuildMpTable(0, 0).ok());
  EXPECT_FALSE(BuildMpTable(0, 33).ok());
}

}  // namespace
}  // namespace hearth::x86
