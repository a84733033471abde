#include "vmm/arch/x86_64/regs.h"

#include <cstring>

#include "gtest/gtest.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::x86 {
namespace {

TEST(Gdt, EntriesEncodeAndDecode) {
  uint64_t code = GdtEntry(0xa09b, 0, 0xfffff);
  EXPECT_EQ(code, 0x00af9b000000ffffull);
  kvm_segment s = SegmentFromGdtEntry(code, 2);
  EXPECT_EQ(s.selector, 0x10);
  EXPECT_EQ(s.l, 1);
  EXPECT_EQ(s.db, 0);
  EXPECT_EQ(s.present, 1);
  EXPECT_EQ(s.type, 0xb);
  EXPECT_EQ(s.limit, 0xffffffffu);
  kvm_segment data = SegmentFromGdtEntry(GdtEntry(0xc093, 0, 0xfffff), 3);
  EXPECT_EQ(data.selector, kBootDataSelector);
  EXPECT_EQ(data.db, 1);
  EXPECT_EQ(data.unusable, 0);
  EXPECT_EQ(SegmentFromGdtEntry(0, 1).unusable, 1);
}

TEST(BootTables, IdentityMapsFirstGigabyte) {
  memory::GuestMemory mem = *memory::GuestMemory::CreateAnonymous(16 * layout::kMiB, {});
  ASSERT_TRUE(WriteBootTables(&mem).ok());
  EXPECT_EQ(*mem.ReadObject<uint64_t>(layout::kPml4Address) & ~0xfffull, layout::kPdpteAddress);
  EXPECT_EQ(*mem.ReadObject<uint64_t>(layout::kPdpteAddress) & ~0xfffull, layout::kPdeAddress);
  uint64_t pde511 = *mem.ReadObject<uint64_t>(layout::kPdeAddress + 511 * 8);
  EXPECT_EQ(pde511 & ~0xfffull, 511ull << 21);
  EXPECT_EQ(pde511 & 0x83, 0x83u);  // present, writable, 2 MiB
  EXPECT_EQ(*mem.ReadObject<uint64_t>(layout::kGdtAddress + 2 * 8), BootGdt()[2]);
}

TEST(BootRegs, LongModeEntryState) {
  kvm_regs regs = BootRegs(0x1000000);
  EXPECT_EQ(regs.rip, 0x1000000u);
  EXPECT_EQ(regs.rsi, layout::kZeroPageAddress);
  EXPECT_EQ(regs.rflags, 2u);  // interrupts off
  kvm_sregs sregs = {};
  SetBootSregs(&sregs);
  EXPECT_EQ(sregs.cs.selector, kBootCodeSelector);
  EXPECT_EQ(sregs.ss.selector, kBootDataSelector);
  EXPECT_EQ(sregs.cr3, layout::kPml4Address);
  EXPECT_TRUE(sregs.cr0 & (1ull << 31));
  EXPECT_TRUE(sregs.cr4 & (1ull << 5));
  EXPECT_EQ(sregs.efer & 0x500, 0x500u);
}

TEST(Lapic, LintDeliveryModes) {
  kvm_lapic_state lapic = {};
  uint32_t masked = 0x10000;
  std::memcpy(&lapic.regs[0x350], &masked, 4);
  SetLocalInterrupts(&lapic);
  uint32_t lint0, lint1;
  std::memcpy(&lint0, &lapic.regs[0x350], 4);
  std::memcpy(&lint1, &lapic.regs[0x360], 4);
  EXPECT_EQ(lint0, 0x10700u);  // mask kept, ExtINT
  EXPECT_EQ(lint1, 0x400u);    // NMI
}

}  // namespace
}  // namespace hearth::x86
