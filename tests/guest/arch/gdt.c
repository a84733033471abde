#include "arch/gdt.h"

// Accessed bits are preset so the CPU never writes back to the table.
uint64_t gdt[GDT_FIXED_ENTRIES + 2 * MAX_CPUS] = {
    0,
    0x00af9b000000ffff,  // 0x08 kernel code, 64-bit (L)
    0x00cf93000000ffff,  // 0x10 kernel data
    0x00cf9b000000ffff,  // 0x18 kernel code, 32-bit (D), for PVH/AP entry
    0x00cff3000000ffff,  // 0x20 user data, DPL 3
    0x00affb000000ffff,  // 0x28 user code, 64-bit, DPL 3
};

_Static_assert(sizeof(gdt) == GDT_BYTES, "kernel/layout.h GDT_BYTES");
_Static_assert(SEL_TSS_BASE == GDT_FIXED_ENTRIES * 8, "TSS selectors follow the fixed ones");

// Read by entry.S (lgdt) before any C runs; the trampoline has its own copy.
struct descriptor_ptr gdt_ptr = {sizeof(gdt) - 1, (uint64_t)gdt};

void gdt_load_tss(uint32_t index, struct tss *tss) {
  // 16-byte system descriptor (SDM Vol. 3A 8.2.3): type 9 = available 64-bit TSS.
  uint64_t base = (uint64_t)tss;
  uint64_t limit = sizeof(*tss) - 1;
  uint64_t *d = &gdt[GDT_FIXED_ENTRIES + 2 * index];
  d[0] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 | ((limit >> 16) & 0xf) << 48 |
         ((base >> 24) & 0xff) << 56;
  d[1] = base >> 32;
  ltr((uint16_t)(SEL_TSS_BASE + 16 * index));
}
