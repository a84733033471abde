// The Intel MultiProcessor Specification 1.4 tables (MP floating pointer +
// MP configuration table): how a guest without ACPI learns its CPUs, the
// IOAPIC and how the ISA interrupts are wired.
#ifndef HEARTH_VMM_ARCH_X86_64_MPTABLE_H_
#define HEARTH_VMM_ARCH_X86_64_MPTABLE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::x86 {

inline constexpr uint32_t kMaxVcpus = 32;
// The IOAPIC's pins, all identity-routed from ISA IRQ i to pin i.
inline constexpr uint32_t kIoapicPins = 24;

// The bytes of both tables for `vcpu_count` CPUs (LAPIC ids 0..n-1, CPU 0
// the bootstrap processor) as they are placed at guest address `base`.
absl::StatusOr<std::string> BuildMpTable(uint64_t base, uint32_t vcpu_count);

// Builds the tables and writes them at layout::kMptableAddress.
absl::Status WriteMpTable(memory::GuestMemory* memory, uint32_t vcpu_count);

}  // namespace hearth::x86

#endif  // HEARTH_VMM_ARCH_X86_64_MPTABLE_H_
