// Converts the Linux zero page (struct boot_params) or the PVH start info into
// struct boot_info. Offsets are from Linux's arch/x86/include/uapi/asm/
// bootparam.h and Xen's public/arch-x86/hvm/start_info.h.
#include "boot/boot_info.h"

#include "lib/string.h"

struct boot_info boot_info;

// struct boot_params (the "zero page").
#define BP_EXT_CMD_LINE_PTR 0x0c0  // u32, high half of the cmdline address
#define BP_E820_ENTRIES 0x1e8      // u8
#define BP_CMD_LINE_PTR 0x228      // u32, hdr.cmd_line_ptr
#define BP_E820_TABLE 0x2d0        // struct boot_e820_entry[128], 20 bytes each
#define BP_E820_MAX 128

struct __attribute__((packed)) boot_e820_entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

// struct hvm_start_info.
#define HVM_START_MAGIC 0x336ec578

struct __attribute__((packed)) hvm_start_info {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version >= 1
  uint32_t memmap_entries;
  uint32_t reserved;
};

struct __attribute__((packed)) hvm_memmap_entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};

static void copy_cmdline(uint64_t paddr) {
  if (paddr == 0) return;
  // The loader's string: physical == virtual under the identity map.
  const char *src = (const char *)paddr;
  size_t n = strnlen(src, BOOT_CMDLINE_MAX);
  if (n == BOOT_CMDLINE_MAX) {
    n = BOOT_CMDLINE_MAX - 1;
    boot_info.cmdline_truncated = true;
  }
  memcpy(boot_info.cmdline, src, n);
  boot_info.cmdline[n] = '\0';
}

static void add_mem_range(uint64_t addr, uint64_t size, uint32_t type) {
  if (size == 0) return;  // qboot's PVH memmap ends with an all-zero entry
  if (boot_info.num_mem_ranges == BOOT_MAX_MEM_RANGES) {
    boot_info.mem_truncated = true;
    return;
  }
  struct mem_range *r = &boot_info.mem[boot_info.num_mem_ranges++];
  r->addr = addr;
  r->size = size;
  r->type = type;
}

static void init_linux64(uint64_t zero_page) {
  const uint8_t *bp = (const uint8_t *)zero_page;
  uint64_t cmdline = *(const uint32_t *)(bp + BP_CMD_LINE_PTR) |
                     (uint64_t) * (const uint32_t *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
  copy_cmdline(cmdline);
  unsigned n = bp[BP_E820_ENTRIES];
  if (n > BP_E820_MAX) n = BP_E820_MAX;
  const struct boot_e820_entry *e = (const void *)(bp + BP_E820_TABLE);
  for (unsigned i = 0; i < n; i++) add_mem_range(e[i].addr, e[i].size, e[i].type);
}

static const char *init_pvh(uint64_t start_info) {
  const struct hvm_start_info *si = (const void *)start_info;
  if (si->magic != HVM_START_MAGIC) return "bad hvm_start_info magic";
  copy_cmdline(si->cmdline_paddr);
  boot_info.rsdp = si->rsdp_paddr;
  if (si->version >= 1 && si->memmap_paddr != 0) {
    const struct hvm_memmap_entry *e = (const void *)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries; i++) {
      add_mem_range(e[i].addr, e[i].size, e[i].type);
    }
  }
  return NULL;
}

const char *boot_info_init(int protocol, uint64_t ptr) {
  boot_info.protocol = protocol;
  if (protocol == BOOT_PROTOCOL_PVH) return init_pvh(ptr);
  init_linux64(ptr);
  return NULL;
}

const char *boot_protocol_name(int protocol) {
  switch (protocol) {
    case BOOT_PROTOCOL_LINUX64:
      return "linux64";
    case BOOT_PROTOCOL_PVH:
      return "pvh";
    default:
      return "unknown";
  }
}

bool boot_mem_is_ram(uint64_t addr, uint64_t size) {
  for (uint32_t i = 0; i < boot_info.num_mem_ranges; i++) {
    const struct mem_range *r = &boot_info.mem[i];
    if (r->type == MEM_TYPE_RAM && addr >= r->addr && addr + size <= r->addr + r->size) {
      return true;
    }
  }
  return false;
}

uint64_t boot_mem_ram_total(void) {
  uint64_t total = 0;
  for (uint32_t i = 0; i < boot_info.num_mem_ranges; i++) {
    if (boot_info.mem[i].type == MEM_TYPE_RAM) total += boot_info.mem[i].size;
  }
  return total;
}

uint64_t boot_mem_ram_end(uint64_t addr) {
  for (uint32_t i = 0; i < boot_info.num_mem_ranges; i++) {
    const struct mem_range *r = &boot_info.mem[i];
    if (r->type == MEM_TYPE_RAM && addr >= r->addr && addr < r->addr + r->size) {
      return r->addr + r->size;
    }
  }
  return 0;
}
