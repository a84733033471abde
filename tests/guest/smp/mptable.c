#include "smp/mptable.h"

#include "lib/string.h"

struct __attribute__((packed)) mp_floating {
  char signature[4];  // "_MP_"
  uint32_t config_addr;
  uint8_t length;  // in 16-byte units
  uint8_t spec_rev;
  uint8_t checksum;
  uint8_t features[5];  // features[0] != 0: a default configuration, no table
};

struct __attribute__((packed)) mp_config {
  char signature[4];  // "PCMP"
  uint16_t length;
  uint8_t spec_rev;
  uint8_t checksum;
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_addr;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};

#define MP_ENTRY_PROCESSOR 0
#define MP_ENTRY_BUS 1
#define MP_ENTRY_IOAPIC 2
#define MP_ENTRY_IO_INTERRUPT 3
#define MP_ENTRY_LOCAL_INTERRUPT 4
#define MP_CPU_ENABLED 0x1
#define MP_CPU_BSP 0x2

static bool checksum_ok(const void *p, uint32_t len) {
  uint8_t sum = 0;
  for (uint32_t i = 0; i < len; i++) sum += ((const uint8_t *)p)[i];
  return sum == 0;
}

static const struct mp_floating *scan(uint64_t start, uint64_t len) {
  for (uint64_t a = start; a + sizeof(struct mp_floating) <= start + len; a += 16) {
    const struct mp_floating *f = (const void *)a;  // identity-mapped low memory
    if (memcmp(f->signature, "_MP_", 4) == 0 && f->length == 1 && checksum_ok(f, sizeof(*f))) {
      return f;
    }
  }
  return NULL;
}

static const struct mp_floating *find_floating(void) {
  // Where Linux looks (arch/x86/kernel/mpparse.c): the EBDA, whose segment
  // is in the BIOS data area at 0x40e, the top KiB of base memory, the BIOS.
  uint64_t ebda = (uint64_t) * (const uint16_t *)0x40e << 4;
  const struct mp_floating *f = NULL;
  if (ebda >= 0x80000 && ebda < 0xa0000) f = scan(ebda, 1024);
  if (f == NULL) f = scan(0x9fc00, 1024);
  if (f == NULL) f = scan(0xf0000, 0x10000);
  return f;
}

// Walks the entries by the table's length, not entry_count, as Linux does
// (smp_read_mpc): qboot (QEMU microvm) writes entry_count = 0.
static void parse_entries(const struct mp_config *t, struct mp_info *info) {
  const uint8_t *p = (const uint8_t *)(t + 1);
  const uint8_t *end = (const uint8_t *)t + t->length;
  while (p < end) {
    switch (p[0]) {
      case MP_ENTRY_PROCESSOR:
        if ((p[3] & MP_CPU_ENABLED) && info->num_cpus < MAX_CPUS) {
          info->apic_ids[info->num_cpus++] = p[1];
          if (p[3] & MP_CPU_BSP) {
            info->bsp_apic_id = p[1];
            info->bsp_flagged = true;
          }
        }
        p += 20;
        break;
      case MP_ENTRY_IOAPIC:
        if ((p[3] & 1) && info->num_ioapics++ == 0) info->ioapic_addr = *(const uint32_t *)(p + 4);
        p += 8;
        break;
      case MP_ENTRY_BUS:
      case MP_ENTRY_IO_INTERRUPT:
      case MP_ENTRY_LOCAL_INTERRUPT:
        p += 8;
        break;
      default:
        info->error = "unknown MP table entry type";
        return;
    }
  }
}

void mptable_find(struct mp_info *info) {
  memset(info, 0, sizeof(*info));
  const struct mp_floating *f = find_floating();
  if (f == NULL) {
    info->error = "no MP floating pointer structure";
    return;
  }
  info->floating_addr = (uint64_t)f;
  if (f->features[0] != 0 || f->config_addr == 0) {
    info->error = "MP default configuration (no table) is not supported";
    return;
  }
  const struct mp_config *t = (const void *)(uint64_t)f->config_addr;
  info->table_addr = f->config_addr;
  if (memcmp(t->signature, "PCMP", 4) != 0) {
    info->error = "bad MP configuration table signature";
    return;
  }
  if (!checksum_ok(t, t->length)) {
    info->error = "bad MP configuration table checksum";
    return;
  }
  info->lapic_addr = t->lapic_addr;
  parse_entries(t, info);
  if (info->error == NULL && info->num_cpus == 0) info->error = "MP table lists no CPU";
}
