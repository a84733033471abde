// The CPU state a vCPU starts in for Linux's 64-bit boot protocol
// (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"): long mode with
// paging, a GDT with flat __BOOT_CS (0x10) and __BOOT_DS (0x18), interrupts
// off, RSI -> boot_params. Pure functions build the values; the KVM calls
// that load them live in the vCPU code.
#ifndef HEARTH_VMM_ARCH_X86_64_REGS_H_
#define HEARTH_VMM_ARCH_X86_64_REGS_H_

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::x86 {

// Boot GDT: null, null, code (0x10), data (0x18), TSS (0x20).
inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint16_t kBootTssSelector = 0x20;
std::array<uint64_t, 5> BootGdt();

// A GDT descriptor from its flags (access byte in bits 0-7, flags in 12-15),
// base and limit (Intel SDM Vol. 3A §3.4.5).
uint64_t GdtEntry(uint16_t flags, uint32_t base, uint32_t limit);
// The kvm_segment KVM expects for GDT entry `entry` at index `index`.
kvm_segment SegmentFromGdtEntry(uint64_t entry, uint8_t index);

// Writes the boot GDT, an empty IDT and identity page tables for the first
// 1 GiB (2 MiB pages) into guest memory.
absl::Status WriteBootTables(memory::GuestMemory* memory);

// Register values for the bootstrap processor entering at `entry`.
kvm_regs BootRegs(uint64_t entry);
// Long mode with paging on the boot page tables; `sregs` comes from
// KVM_GET_SREGS so fields Hearth does not set keep KVM's values.
void SetBootSregs(kvm_sregs* sregs);
// x87 control word and MXCSR at their reset values.
kvm_fpu BootFpu();
// MSRs Linux expects initialised at boot (SYSCALL/SYSENTER cleared, fast
// strings on, write-back MTRR default type).
std::vector<kvm::MsrEntry> BootMsrs();
// LVT LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a BIOS would
// leave them (Intel MP spec §3.6.2, virtual wire mode).
void SetLocalInterrupts(kvm_lapic_state* lapic);

}  // namespace hearth::x86

#endif  // HEARTH_VMM_ARCH_X86_64_REGS_H_
