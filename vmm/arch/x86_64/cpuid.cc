#include "vmm/arch/x86_64/cpuid.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hearth::x86 {
namespace {

// CPUID.1
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
// CPUID.0xB / 0x1F level types (ECX[15:8]).
constexpr uint32_t kLevelTypeInvalid = 0;
constexpr uint32_t kLevelTypeSmt = 1;
constexpr uint32_t kLevelTypeCore = 2;

kvm_cpuid_entry2* Find(kvm::CpuidEntries* entries, uint32_t function, uint32_t index = 0) {
  for (kvm_cpuid_entry2& e : *entries) {
    if (e.function != function) continue;
    bool indexed = e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    if (!indexed || e.index == index) return &e;
  }
  return nullptr;
}

// Smallest n with (1 << n) >= value.
uint32_t Log2Ceil(uint32_t value) {
  uint32_t bits = 0;
  while ((1u << bits) < value) ++bits;
  return bits;
}

void SetBits(uint32_t* reg, int low, int high, uint32_t value) {
  uint32_t width = static_cast<uint32_t>(high - low + 1);
  uint32_t mask = (width >= 32 ? ~0u : ((1u << width) - 1)) << low;
  *reg = (*reg & ~mask) | ((value << low) & mask);
}

void NormalizeLeaf1(const CpuTopology& t, kvm_cpuid_entry2* leaf) {
  SetBits(&leaf->ebx, 24, 31, t.vcpu_id);     // initial APIC id
  SetBits(&leaf->ebx, 16, 23, t.vcpu_count);  // logical CPUs per package
  SetBits(&leaf->ebx, 8, 15, 8);              // CLFLUSH line: 8 * 8 bytes
  leaf->ecx |= kLeaf1EcxHypervisor;
  if (t.vcpu_count > 1) {
    leaf->edx |= kLeaf1EdxHtt;
  } else {
    leaf->edx &= ~kLeaf1EdxHtt;
  }
}

// Intel deterministic cache parameters: cores per package and threads per
// cache. L1/L2 are shared by the threads of a core, L3 by the package.
void NormalizeLeaf4(const CpuTopology& t, kvm::CpuidEntries* entries) {
  uint32_t threads_per_core = t.smt ? 2 : 1;
  uint32_t cores = t.vcpu_count / threads_per_core;
  for (kvm_cpuid_entry2& e : *entries) {
    if (e.function != 0x4) continue;
    uint32_t level = (e.eax >> 5) & 0x7;
    if ((e.eax & 0x1f) == 0) continue;  // no more caches
    uint32_t sharing = level >= 3 ? t.vcpu_count : threads_per_core;
    SetBits(&e.eax, 14, 25, sharing - 1);
    SetBits(&e.eax, 26, 31, cores - 1);
  }
}

// Intel extended topology (0xB and 0x1F): SMT level, then core level.
void NormalizeExtendedTopology(const CpuTopology& t, uint32_t function,
                               kvm::CpuidEntries* entries) {
  uint32_t threads_per_core = t.smt ? 2 : 1;
  for (kvm_cpuid_entry2& e : *entries) {
    if (e.function != function) continue;
    e.edx = t.vcpu_id;  // x2APIC id
    switch (e.index) {
      case 0:
        e.eax = t.smt ? 1 : 0;
        e.ebx = threads_per_core;
        e.ecx = (kLevelTypeSmt << 8) | 0;
        break;
      case 1:
        e.eax = Log2Ceil(t.vcpu_count);
        e.ebx = t.vcpu_count;
        e.ecx = (kLevelTypeCore << 8) | 1;
        break;
      default:
        e.eax = 0;
        e.ebx = 0;
        e.ecx = (kLevelTypeInvalid << 8) | (e.index & 0xff);
        break;
    }
  }
}

void NormalizeAmd(const CpuTopology& t, kvm::CpuidEntries* entries) {
  uint32_t threads_per_core = t.smt ? 2 : 1;
  if (kvm_cpuid_entry2* e = Find(entries, 0x80000008)) {
    SetBits(&e->ecx, 0, 7, t.vcpu_count - 1);          // NC: threads - 1
    SetBits(&e->ecx, 12, 15, Log2Ceil(t.vcpu_count));  // ApicIdCoreIdSize
  }
  if (kvm_cpuid_entry2* e = Find(entries, 0x8000001e)) {
    e->eax = t.vcpu_id;  // extended APIC id
    e->ebx = ((threads_per_core - 1) << 8) | (t.vcpu_id / threads_per_core);
    e->ecx = 0;  // node 0, one node per package
    e->edx = 0;
  }
}

}  // namespace

CpuVendor VendorOf(const kvm::CpuidEntries& entries) {
  for (const kvm_cpuid_entry2& e : entries) {
    if (e.function != 0) continue;
    char vendor[12];
    std::memcpy(vendor, &e.ebx, 4);
    std::memcpy(vendor + 4, &e.edx, 4);
    std::memcpy(vendor + 8, &e.ecx, 4);
    if (std::memcmp(vendor, "GenuineIntel", 12) == 0) return CpuVendor::kIntel;
    if (std::memcmp(vendor, "AuthenticAMD", 12) == 0) return CpuVendor::kAmd;
    return CpuVendor::kOther;
  }
  return CpuVendor::kOther;
}

absl::Status NormalizeCpuid(const CpuTopology& t, kvm::CpuidEntries* entries) {
  if (t.vcpu_count == 0 || t.vcpu_id >= t.vcpu_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPUID: vcpu ", t.vcpu_id, " of ", t.vcpu_count, " is not valid"));
  }
  if (t.smt && t.vcpu_count % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPUID: SMT needs an even vcpu_count, got ", t.vcpu_count));
  }
  kvm_cpuid_entry2* leaf1 = Find(entries, 0x1);
  if (Find(entries, 0x0) == nullptr || leaf1 == nullptr) {
    return absl::FailedPreconditionError("KVM_GET_SUPPORTED_CPUID returned no leaf 0 or 1");
  }
  NormalizeLeaf1(t, leaf1);
  NormalizeLeaf4(t, entries);
  NormalizeExtendedTopology(t, 0xb, entries);
  NormalizeExtendedTopology(t, 0x1f, entries);
  if (VendorOf(*entries) == CpuVendor::kAmd) NormalizeAmd(t, entries);
  return absl::OkStatus();
}

}  // namespace hearth::x86
