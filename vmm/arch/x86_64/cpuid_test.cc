#include "vmm/arch/x86_64/cpuid.h"

#include <cstring>

#include "gtest/gtest.h"

namespace hearth::x86 {
namespace {

kvm_cpuid_entry2 Entry(uint32_t function, uint32_t index, bool indexed) {
  kvm_cpuid_entry2 e = {};
  e.function = function;
  e.index = index;
  if (indexed) e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  return e;
}

kvm::CpuidEntries HostLike(const char* vendor) {
  kvm::CpuidEntries entries;
  kvm_cpuid_entry2 leaf0 = Entry(0, 0, false);
  leaf0.eax = 0x1f;
  std::memcpy(&leaf0.ebx, vendor, 4);
  std::memcpy(&leaf0.edx, vendor + 4, 4);
  std::memcpy(&leaf0.ecx, vendor + 8, 4);
  entries.push_back(leaf0);
  kvm_cpuid_entry2 leaf1 = Entry(1, 0, false);
  leaf1.ebx = 0xff400800;  // host APIC id 0xff, 64 logical CPUs
  entries.push_back(leaf1);
  kvm_cpuid_entry2 l1d = Entry(4, 0, true);
  l1d.eax = (1 << 5) | 1;  // level 1 data cache
  entries.push_back(l1d);
  kvm_cpuid_entry2 l3 = Entry(4, 3, true);
  l3.eax = (3 << 5) | 3;  // level 3 unified
  entries.push_back(l3);
  for (uint32_t i = 0; i < 3; ++i) entries.push_back(Entry(0xb, i, true));
  entries.push_back(Entry(0x80000008, 0, false));
  entries.push_back(Entry(0x8000001e, 0, false));
  return entries;
}

const kvm_cpuid_entry2& Get(const kvm::CpuidEntries& e, uint32_t f, uint32_t i = 0) {
  for (const auto& x : e) {
    if (x.function == f && x.index == i) return x;
  }
  static kvm_cpuid_entry2 none = {};
  ADD_FAILURE() << "no leaf " << f << "." << i;
  return none;
}

TEST(Cpuid, VendorDetection) {
  EXPECT_EQ(VendorOf(HostLike("GenuineIntel")), CpuVendor::kIntel);
  EXPECT_EQ(VendorOf(HostLike("AuthenticAMD")), CpuVendor::kAmd);
  EXPECT_EQ(VendorOf(HostLike("HygonGenuine")), CpuVendor::kOther);
}

TEST(Cpuid, Leaf1CarriesApicIdCountAndHypervisorBit) {
  kvm::CpuidEntries e = HostLike("GenuineIntel");
  ASSERT_TRUE(NormalizeCpuid({3, 4, false}, &e).ok());
  const auto& leaf1 = Get(e, 1);
  EXPECT_EQ(leaf1.ebx >> 24, 3u);
  EXPECT_EQ((leaf1.ebx >> 16) & 0xff, 4u);
  EXPECT_TRUE(leaf1.ecx & (1u << 31));
  EXPECT_TRUE(leaf1.edx & (1u << 28));
  kvm::CpuidEntries single = HostLike("GenuineIntel");
  ASSERT_TRUE(NormalizeCpuid({0, 1, false}, &single).ok());
  EXPECT_FALSE(Get(single, 1).edx & (1u << 28));
}

TEST(Cpuid, IntelTopologyLeaves) {
  kvm::CpuidEntries e = HostLike("GenuineIntel");
  ASSERT_TRUE(NormalizeCpuid({5, 6, true}, &e).ok());
  EXPECT_EQ(Get(e, 0xb, 0).ebx, 2u);  // threads per core
  EXPECT_EQ(Get(e, 0xb, 0).eax, 1u);
  EXPECT_EQ(Get(e, 0xb, 1).ebx, 6u);       // logical CPUs in the package
  EXPECT_EQ(Get(e, 0xb, 1).eax, 3u);       // ceil(log2(6))
  EXPECT_EQ(Get(e, 0xb, 2).ecx >> 8, 0u);  // invalid level terminates
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(Get(e, 0xb, i).edx, 5u);
  EXPECT_EQ((Get(e, 4, 0).eax >> 26) + 1, 3u);            // cores per package
  EXPECT_EQ(((Get(e, 4, 0).eax >> 14) & 0xfff) + 1, 2u);  // L1 per core
  EXPECT_EQ(((Get(e, 4, 3).eax >> 14) & 0xfff) + 1, 6u);  // L3 per package
}

TEST(Cpuid, AmdTopologyLeaves) {
  kvm::CpuidEntries e = HostLike("AuthenticAMD");
  ASSERT_TRUE(NormalizeCpuid({3, 4, true}, &e).ok());
  EXPECT_EQ(Get(e, 0x80000008).ecx & 0xff, 3u);
  EXPECT_EQ(Get(e, 0x8000001e).eax, 3u);
  EXPECT_EQ(Get(e, 0x8000001e).ebx & 0xff, 1u);         // core id
  EXPECT_EQ((Get(e, 0x8000001e).ebx >> 8) & 0xff, 1u);  // 2 threads per core
}

TEST(Cpuid, RejectsInconsistentTopology) {
  kvm::CpuidEntries e = HostLike("GenuineIntel");
  EXPECT_FALSE(NormalizeCpuid({2, 2, false}, &e).ok());
  EXPECT_FALSE(NormalizeCpuid({0, 3, true}, &e).ok());
  kvm::CpuidEntries empty;
  EXPECT_FALSE(NormalizeCpuid({0, 1, false}, &empty).ok());
}

}  // namespace
}  // namespace hearth::x86
