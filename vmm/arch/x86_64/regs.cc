#include "vmm/arch/x86_64/regs.h"

#include <cstring>

#include "common/status_macros.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::x86 {
namespace {

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

// Page table entry bits.
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kPageSize2M = 1ull << 7;

constexpr uint32_t kMsrIa32Tsc = 0x10;
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1ull << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;

// LAPIC register offsets and LVT delivery modes.
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicModeMask = 0x700;
constexpr uint32_t kApicModeNmi = 0x400;
constexpr uint32_t kApicModeExtInt = 0x700;

}  // namespace

uint64_t GdtEntry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000) << (56 - 24)) | ((uint64_t{flags} & 0x0000f0ff) << 40) |
         ((uint64_t{limit} & 0x000f0000) << (48 - 16)) | ((uint64_t{base} & 0x00ffffff) << 16) |
         (uint64_t{limit} & 0x0000ffff);
}

kvm_segment SegmentFromGdtEntry(uint64_t entry, uint8_t index) {
  kvm_segment s = {};
  s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.g = (entry >> 55) & 1;
  // With 4 KiB granularity the limit counts pages.
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = static_cast<uint16_t>(index * 8);
  s.type = (entry >> 40) & 0xf;
  s.s = (entry >> 44) & 1;
  s.dpl = (entry >> 45) & 3;
  s.present = (entry >> 47) & 1;
  s.avl = (entry >> 52) & 1;
  s.l = (entry >> 53) & 1;
  s.db = (entry >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

std::array<uint64_t, 5> BootGdt() {
  return {
      0,
      0,
      GdtEntry(0xa09b, 0, 0xfffff),  // 0x10: code, 64-bit, present, DPL0
      GdtEntry(0xc093, 0, 0xfffff),  // 0x18: data, read/write, present
      GdtEntry(0x808b, 0, 0xfffff),  // 0x20: 64-bit TSS (busy)
  };
}

absl::Status WriteBootTables(memory::GuestMemory* memory) {
  std::array<uint64_t, 5> gdt = BootGdt();
  RETURN_IF_ERROR(memory->Write(layout::kGdtAddress, gdt.data(), gdt.size() * sizeof(uint64_t)));
  RETURN_IF_ERROR(memory->WriteObject<uint64_t>(layout::kIdtAddress, 0));
  // PML4[0] -> PDPTE; PDPTE[0] -> PDE; PDE[i] maps 2 MiB at i * 2 MiB.
  RETURN_IF_ERROR(memory->WriteObject<uint64_t>(layout::kPml4Address,
                                                layout::kPdpteAddress | kPresent | kWritable));
  RETURN_IF_ERROR(memory->WriteObject<uint64_t>(layout::kPdpteAddress,
                                                layout::kPdeAddress | kPresent | kWritable));
  std::array<uint64_t, 512> pde;
  for (uint64_t i = 0; i < pde.size(); ++i) {
    pde[i] = (i << 21) | kPresent | kWritable | kPageSize2M;
  }
  return memory->Write(layout::kPdeAddress, pde.data(), pde.size() * sizeof(uint64_t));
}

kvm_regs BootRegs(uint64_t entry) {
  kvm_regs regs = {};
  regs.rflags = 0x2;  // bit 1 is reserved and always set
  regs.rip = entry;
  regs.rsp = layout::kBootStackPointer;
  regs.rbp = layout::kBootStackPointer;
  regs.rsi = layout::kZeroPageAddress;
  return regs;
}

void SetBootSregs(kvm_sregs* sregs) {
  std::array<uint64_t, 5> gdt = BootGdt();
  kvm_segment code = SegmentFromGdtEntry(gdt[2], 2);
  kvm_segment data = SegmentFromGdtEntry(gdt[3], 3);
  kvm_segment tss = SegmentFromGdtEntry(gdt[4], 4);
  sregs->gdt.base = layout::kGdtAddress;
  sregs->gdt.limit = static_cast<uint16_t>(gdt.size() * sizeof(uint64_t) - 1);
  sregs->idt.base = layout::kIdtAddress;
  sregs->idt.limit = sizeof(uint64_t) - 1;
  sregs->cs = code;
  sregs->ds = data;
  sregs->es = data;
  sregs->fs = data;
  sregs->gs = data;
  sregs->ss = data;
  sregs->tr = tss;
  sregs->cr3 = layout::kPml4Address;
  sregs->cr4 |= kCr4Pae;
  sregs->cr0 |= kCr0Pe | kCr0Et | kCr0Pg;
  sregs->efer |= kEferLme | kEferLma;
}

kvm_fpu BootFpu() {
  kvm_fpu fpu;
  std::memset(&fpu, 0, sizeof(fpu));
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return fpu;
}

std::vector<kvm::MsrEntry> BootMsrs() {
  return {
      {kMsrSysenterCs, 0},
      {kMsrSysenterEsp, 0},
      {kMsrSysenterEip, 0},
      {kMsrStar, 0},
      {kMsrCstar, 0},
      {kMsrKernelGsBase, 0},
      {kMsrSyscallMask, 0},
      {kMsrLstar, 0},
      {kMsrIa32Tsc, 0},
      {kMsrMiscEnable, kMiscEnableFastString},
      {kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack},
  };
}

void SetLocalInterrupts(kvm_lapic_state* lapic) {
  auto set_mode = [lapic](size_t offset, uint32_t mode) {
    uint32_t value;
    std::memcpy(&value, &lapic->regs[offset], sizeof(value));
    value = (value & ~kApicModeMask) | mode;
    std::memcpy(&lapic->regs[offset], &value, sizeof(value));
  };
  set_mode(kApicLvtLint0, kApicModeExtInt);
  set_mode(kApicLvtLint1, kApicModeNmi);
}

}  // namespace hearth::x86
