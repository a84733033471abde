// Intel MultiProcessor Specification 1.4 tables: the MP floating pointer
// structure ("_MP_", chapter 4.1) and the configuration table ("PCMP", 4.2)
// with its processor and I/O APIC entries. Hearth (like Firecracker) and
// QEMU microvm's firmware (qboot) both write them at 0x9fc00.
#ifndef GUEST_SMP_MPTABLE_H_
#define GUEST_SMP_MPTABLE_H_

#include <stdbool.h>
#include <stdint.h>

#include "kernel/layout.h"

struct mp_info {
  uint64_t floating_addr;  // where "_MP_" was found
  uint64_t table_addr;     // the "PCMP" table
  uint32_t num_cpus;       // enabled processor entries
  uint32_t apic_ids[MAX_CPUS];
  uint32_t bsp_apic_id;
  bool bsp_flagged;  // some entry had the BP flag
  uint32_t num_ioapics;
  uint64_t ioapic_addr;  // first I/O APIC
  uint64_t lapic_addr;
  const char *error;  // NULL if the table is usable
};

// Searches the EBDA, the last KiB of base memory and 0xf0000-0xfffff, checks
// both checksums and parses the entries. Meant to run at CPL3 (user_call):
// it scans up to 64 KiB. Returns info->error == NULL on success.
void mptable_find(struct mp_info *info);

#endif  // GUEST_SMP_MPTABLE_H_
