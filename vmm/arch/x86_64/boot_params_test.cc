#include "vmm/arch/x86_64/boot_params.h"

#include "gtest/gtest.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::x86 {
namespace {

using layout::kGiB;
using layout::kMiB;

TEST(E820, SmallGuestHasLowAndHighRam) {
  auto map = BuildE820Map(128 * kMiB);
  ASSERT_EQ(map.size(), 2u);
  EXPECT_EQ(map[0].address, 0u);
  EXPECT_EQ(map[0].size, layout::kEbdaStart);
  EXPECT_EQ(map[0].type, 1u);
  EXPECT_EQ(map[1].address, 1 * kMiB);
  EXPECT_EQ(map[1].size, 127 * kMiB);
}

TEST(E820, LargeGuestSkipsTheMmioHole) {
  auto map = BuildE820Map(5 * kGiB);
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[1].address + map[1].size, 3 * kGiB);
  EXPECT_EQ(map[2].address, 4 * kGiB);
  EXPECT_EQ(map[2].size, 2 * kGiB);
}

TEST(BootParams, ElfKernelGetsMinimalHeader) {
  BootParamsInput in;
  in.cmdline_address = layout::kCmdlineAddress;
  in.cmdline_size = 12;
  in.e820 = BuildE820Map(64 * kMiB);
  BootParams p = *BuildBootParams(in);
  EXPECT_EQ(p.hdr.boot_flag, 0xaa55);
  EXPECT_EQ(p.hdr.header, kHdrSMagic);
  EXPECT_EQ(p.hdr.type_of_loader, 0xff);
  EXPECT_EQ(p.hdr.cmd_line_ptr, layout::kCmdlineAddress);
  EXPECT_EQ(p.hdr.cmdline_size, 12u);
  EXPECT_EQ(p.hdr.ramdisk_image, 0u);
  EXPECT_EQ(p.e820_entries, 2);
  EXPECT_EQ(p.e820_table[1].address, 1 * kMiB);
  // Byte-level check of the documented offsets.
  const uint8_t* raw = reinterpret_cast<const uint8_t*>(&p);
  EXPECT_EQ(raw[0x1e8], 2);
  EXPECT_EQ(raw[0x228] | (raw[0x229] << 8) | (raw[0x22a] << 16), 0x20000);
}

TEST(BootParams, BzImageHeaderIsKeptAndInitrdRecorded) {
  SetupHeader hdr = {};
  hdr.boot_flag = kBootFlagMagic;
  hdr.header = kHdrSMagic;
  hdr.version = 0x20f;
  hdr.init_size = 0x123456;
  BootParamsInput in;
  in.kernel_header = hdr;
  in.initrd_address = 0x7000000;
  in.initrd_size = 0x1000;
  BootParams p = *BuildBootParams(in);
  EXPECT_EQ(p.hdr.version, 0x20f);
  EXPECT_EQ(p.hdr.init_size, 0x123456u);
  EXPECT_EQ(p.hdr.type_of_loader, 0xff);
  EXPECT_EQ(p.hdr.ramdisk_image, 0x7000000u);
  EXPECT_EQ(p.hdr.ramdisk_size, 0x1000u);
}

TEST(BootParams, RejectsImpossibleInput) {
  BootParamsInput in;
  in.e820.resize(kE820MaxEntries + 1);
  EXPECT_FALSE(BuildBootParams(in).ok());
  BootParamsInput high;
  high.initrd_address = 5 * kGiB;
  high.initrd_size = 1;
  EXPECT_FALSE(BuildBootParams(high).ok());
}

}  // namespace
}  // namespace hearth::x86
