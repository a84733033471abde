// Every guest-physical address Hearth's x86_64 VMM uses, in one place.
//
// Low memory follows Firecracker's layout (so kernels and tools that know it
// feel at home) and Linux's x86 boot protocol (Documentation/arch/x86/boot.rst):
//
//   0x0000_0500  GDT (used for the 64-bit entry only; the kernel loads its own)
//   0x0000_0520  IDT (empty, limit 0: interrupts stay off until the kernel's)
//   0x0000_7000  zero page (struct boot_params), pointed to by RSI
//   0x0000_8ff0  boot stack pointer
//   0x0000_9000  PML4, 0xa000 PDPTE, 0xb000 PDE: first 1 GiB identity-mapped
//   0x0002_0000  kernel command line, at most kCmdlineMaxSize bytes with NUL
//   0x0009_fc00  MP floating pointer + MP configuration table (SMP)
//   0x0010_0000  bzImage protected-mode kernel (ELF kernels load at p_paddr)
//   top of RAM below the MMIO hole: initrd, page-aligned
//   0xc000_0000 .. 0xffff_ffff  the 32-bit MMIO hole: virtio-mmio windows from
//                0xd000_0000, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000, KVM's
//                TSS and identity-map pages just below 0xfffc_0000
//   0x1_0000_0000  RAM beyond 3 GiB continues here
#ifndef HEARTH_VMM_ARCH_X86_64_LAYOUT_H_
#define HEARTH_VMM_ARCH_X86_64_LAYOUT_H_

#include <cstdint>

namespace hearth::x86::layout {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;
inline constexpr uint64_t kPageSize = 4 * kKiB;

// Boot structures below 1 MiB.
inline constexpr uint64_t kGdtAddress = 0x500;
inline constexpr uint64_t kIdtAddress = 0x520;
inline constexpr uint64_t kZeroPageAddress = 0x7000;
inline constexpr uint64_t kBootStackPointer = 0x8ff0;
inline constexpr uint64_t kPml4Address = 0x9000;
inline constexpr uint64_t kPdpteAddress = 0xa000;
inline constexpr uint64_t kPdeAddress = 0xb000;
inline constexpr uint64_t kCmdlineAddress = 0x20000;
// Linux x86's COMMAND_LINE_SIZE, the terminating NUL included.
inline constexpr uint64_t kCmdlineMaxSize = 2048;
// The extended BIOS data area starts here; the MP table lives at its start.
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kMptableAddress = kEbdaStart;
// End of the legacy low RAM e820 entry; [kEbdaStart, 1 MiB) is not RAM.
inline constexpr uint64_t kLowRamEnd = kEbdaStart;
// Where RAM resumes after the legacy hole, and where a bzImage's
// protected-mode code is loaded.
inline constexpr uint64_t kHighMemStart = 1 * kMiB;

// The 32-bit MMIO hole. RAM above kMmioHoleStart is moved to kHighRamStart.
inline constexpr uint64_t kMmioHoleStart = 3 * kGiB;
inline constexpr uint64_t kMmioHoleEnd = 4 * kGiB;
inline constexpr uint64_t kHighRamStart = kMmioHoleEnd;

// virtio-mmio windows: one 4 KiB page each, consecutive from here.
inline constexpr uint64_t kVirtioMmioStart = 0xd0000000;
inline constexpr uint64_t kVirtioMmioWindowSize = 4 * kKiB;
// GSIs handed to virtio-mmio devices (the IOAPIC has 24 pins; 0-4 are legacy
// devices: PIT 0, i8042 1, cascade 2, COM2 3, COM1 4).
inline constexpr uint32_t kFirstVirtioGsi = 5;
inline constexpr uint32_t kLastVirtioGsi = 23;

inline constexpr uint64_t kIoapicAddress = 0xfec00000;
inline constexpr uint64_t kLapicAddress = 0xfee00000;
// KVM_SET_IDENTITY_MAP_ADDR takes one page, KVM_SET_TSS_ADDR three, inside
// the MMIO hole where they cannot collide with RAM or devices.
inline constexpr uint64_t kKvmIdentityMapAddress = 0xfffbc000;
inline constexpr uint64_t kKvmTssAddress = 0xfffbd000;

// Legacy I/O ports and their interrupt lines.
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint16_t kCom1PortCount = 8;
inline constexpr uint32_t kCom1Gsi = 4;
inline constexpr uint16_t kI8042Port = 0x60;
inline constexpr uint16_t kI8042PortCount = 5;  // 0x60..0x64
inline constexpr uint32_t kI8042Gsi = 1;

// Linux's initrd_addr_max default for boot protocol < 2.03 kernels and for
// ELF kernels that carry no setup header.
inline constexpr uint64_t kDefaultInitrdAddrMax = 0x37ffffff;

}  // namespace hearth::x86::layout

#endif  // HEARTH_VMM_ARCH_X86_64_LAYOUT_H_
