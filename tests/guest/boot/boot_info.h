// What the guest learned from its loader, in one form for both boot paths.
//
// boot_info_init() copies everything out of the loader's structures (Linux
// boot_params or PVH hvm_start_info) first thing, so nothing the guest does
// later (AP trampoline, heap) can overwrite what it still needs.
#ifndef GUEST_BOOT_BOOT_INFO_H_
#define GUEST_BOOT_BOOT_INFO_H_

#define BOOT_PROTOCOL_LINUX64 1
#define BOOT_PROTOCOL_PVH 2

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

#define BOOT_CMDLINE_MAX 2048  // Hearth's and Firecracker's limit, NUL included
#define BOOT_MAX_MEM_RANGES 128

// e820 / PVH memory map types (ACPI 6.4 table 15.312; same numbers in both).
#define MEM_TYPE_RAM 1
#define MEM_TYPE_RESERVED 2
#define MEM_TYPE_ACPI 3
#define MEM_TYPE_NVS 4

struct mem_range {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

struct boot_info {
  int protocol;  // BOOT_PROTOCOL_*
  char cmdline[BOOT_CMDLINE_MAX];
  bool cmdline_truncated;
  uint32_t num_mem_ranges;
  struct mem_range mem[BOOT_MAX_MEM_RANGES];
  bool mem_truncated;
  uint64_t rsdp;  // ACPI RSDP from PVH start info; 0 if none given
};

extern struct boot_info boot_info;

// Fills boot_info from the loader's structure at |ptr|. Returns NULL on
// success, else a reason (bad PVH magic); boot_info is then partial.
const char *boot_info_init(int protocol, uint64_t ptr);
const char *boot_protocol_name(int protocol);

// True if one RAM range covers all of [addr, addr + size).
bool boot_mem_is_ram(uint64_t addr, uint64_t size);
// Sum of the sizes of all RAM (type 1) ranges.
uint64_t boot_mem_ram_total(void);
// End of the RAM range that contains |addr|, or 0 if none does.
uint64_t boot_mem_ram_end(uint64_t addr);

#endif  // __ASSEMBLER__
#endif  // GUEST_BOOT_BOOT_INFO_H_
