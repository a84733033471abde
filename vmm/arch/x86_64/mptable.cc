#include "vmm/arch/x86_64/mptable.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::x86 {
namespace {

// MP spec 1.4 §4.1, §4.2, §4.3.
struct __attribute__((packed)) MpFloatingPointer {
  char signature[4];  // "_MP_"
  uint32_t config_table;
  uint8_t length;  // in 16-byte units
  uint8_t spec_rev;
  uint8_t checksum;
  uint8_t feature[5];
};

struct __attribute__((packed)) MpConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_address;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};

struct __attribute__((packed)) MpProcessor {
  uint8_t type;  // 0
  uint8_t lapic_id;
  uint8_t lapic_version;
  uint8_t flags;  // bit 0 enabled, bit 1 bootstrap processor
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};

struct __attribute__((packed)) MpBus {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];
};

struct __attribute__((packed)) MpIoapic {
  uint8_t type;  // 2
  uint8_t id;
  uint8_t version;
  uint8_t flags;  // bit 0 enabled
  uint32_t address;
};

struct __attribute__((packed)) MpInterrupt {
  uint8_t type;            // 3 I/O interrupt, 4 local interrupt
  uint8_t interrupt_type;  // 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t flags;          // 0: polarity and trigger conform to the bus
  uint8_t source_bus;
  uint8_t source_irq;
  uint8_t destination_apic;
  uint8_t destination_pin;
};

static_assert(sizeof(MpFloatingPointer) == 16);
static_assert(sizeof(MpConfigHeader) == 44);
static_assert(sizeof(MpProcessor) == 20);
static_assert(sizeof(MpBus) == 8);
static_assert(sizeof(MpIoapic) == 8);
static_assert(sizeof(MpInterrupt) == 8);

constexpr uint8_t kLapicVersion = 0x14;
constexpr uint8_t kIoapicVersion = 0x11;
// Family 6 processor with an on-chip FPU and APIC (CPUID.1 EDX bits 0, 9).
constexpr uint32_t kCpuSignature = 0x600;
constexpr uint32_t kCpuFeatures = (1u << 0) | (1u << 9);
// All LAPICs, for the local interrupt entries.
constexpr uint8_t kAllLapics = 0xff;

template <typename T>
void Append(std::string* out, const T& entry) {
  out->append(reinterpret_cast<const char*>(&entry), sizeof(entry));
}

uint8_t Checksum(const char* data, size_t length) {
  uint8_t sum = 0;
  for (size_t i = 0; i < length; ++i) sum += static_cast<uint8_t>(data[i]);
  return static_cast<uint8_t>(-sum);
}

}  // namespace

absl::StatusOr<std::string> BuildMpTable(uint64_t base, uint32_t vcpu_count) {
  if (vcpu_count == 0 || vcpu_count > kMaxVcpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("MP table: vcpu_count ", vcpu_count, " is outside 1..", kMaxVcpus));
  }
  std::string entries;
  uint16_t entry_count = 0;
  for (uint32_t cpu = 0; cpu < vcpu_count; ++cpu) {
    MpProcessor p = {};
    p.lapic_id = static_cast<uint8_t>(cpu);
    p.lapic_version = kLapicVersion;
    p.flags = static_cast<uint8_t>(1 | (cpu == 0 ? 2 : 0));
    p.signature = kCpuSignature;
    p.features = kCpuFeatures;
    Append(&entries, p);
    ++entry_count;
  }
  MpBus bus = {1, 0, {'I', 'S', 'A', ' ', ' ', ' '}};
  Append(&entries, bus);
  ++entry_count;
  const uint8_t ioapic_id = static_cast<uint8_t>(vcpu_count);
  Append(&entries,
         MpIoapic{2, ioapic_id, kIoapicVersion, 1, static_cast<uint32_t>(layout::kIoapicAddress)});
  ++entry_count;
  for (uint8_t pin = 0; pin < kIoapicPins; ++pin) {
    Append(&entries, MpInterrupt{3, 0, 0, 0, pin, ioapic_id, pin});
    ++entry_count;
  }
  Append(&entries, MpInterrupt{4, 3, 0, 0, 0, kAllLapics, 0});  // LINT0 ExtINT
  Append(&entries, MpInterrupt{4, 1, 0, 0, 0, kAllLapics, 1});  // LINT1 NMI
  entry_count += 2;

  MpConfigHeader header = {};
  std::memcpy(header.signature, "PCMP", 4);
  header.length = static_cast<uint16_t>(sizeof(header) + entries.size());
  header.spec_rev = 4;
  std::memcpy(header.oem_id, "HEARTH  ", 8);
  std::memcpy(header.product_id, "MICROVM     ", 12);
  header.entry_count = entry_count;
  header.lapic_address = static_cast<uint32_t>(layout::kLapicAddress);
  std::string config;
  Append(&config, header);
  config += entries;
  config[offsetof(MpConfigHeader, checksum)] =
      static_cast<char>(Checksum(config.data(), config.size()));

  MpFloatingPointer fp = {};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.config_table = static_cast<uint32_t>(base + sizeof(fp));
  fp.length = 1;
  fp.spec_rev = 4;
  fp.checksum = Checksum(reinterpret_cast<const char*>(&fp), sizeof(fp));
  std::string table;
  Append(&table, fp);
  return table + config;
}

absl::Status WriteMpTable(memory::GuestMemory* memory, uint32_t vcpu_count) {
  absl::StatusOr<std::string> table = BuildMpTable(layout::kMptableAddress, vcpu_count);
  if (!table.ok()) return table.status();
  if (layout::kMptableAddress + table->size() > layout::kHighMemStart) {
    return absl::InternalError("MP table does not fit below 1 MiB");
  }
  return memory->Write(layout::kMptableAddress, table->data(), table->size());
}

}  // namespace hearth::x86
