// Per-vCPU CPUID: KVM_GET_SUPPORTED_CPUID's table with the topology a guest
// must see for *this* vCPU — its initial APIC id, how many logical CPUs share
// a package and a core — and the hypervisor bit. Leaves that describe the
// host's topology (Intel 0x4/0xb/0x1f, AMD 0x80000008/0x8000001e) are
// rewritten so that every vCPU agrees on one package of `vcpu_count` CPUs.
#ifndef HEARTH_VMM_ARCH_X86_64_CPUID_H_
#define HEARTH_VMM_ARCH_X86_64_CPUID_H_

#include <cstdint>

#include "absl/status/status.h"
#include "vmm/kvm/kvm.h"

namespace hearth::x86 {

enum class CpuVendor { kIntel, kAmd, kOther };

CpuVendor VendorOf(const kvm::CpuidEntries& entries);

struct CpuTopology {
  uint32_t vcpu_id;     // 0-based; also the initial APIC id
  uint32_t vcpu_count;  // 1..32
  bool smt;             // two threads per core (vcpu_count must be even)
};

// Rewrites `entries` in place for `topology`. Fails if leaf 0 or 1 is absent
// or the topology is inconsistent.
absl::Status NormalizeCpuid(const CpuTopology& topology, kvm::CpuidEntries* entries);

}  // namespace hearth::x86

#endif  // HEARTH_VMM_ARCH_X86_64_CPUID_H_
