// The guest's GDT: kernel code/data, a 32-bit code segment for the PVH and AP
// entry paths, user code/data (DPL 3) and one TSS per CPU. Selectors are in
// kernel/layout.h.
#ifndef GUEST_ARCH_GDT_H_
#define GUEST_ARCH_GDT_H_

#include <stdint.h>

#include "arch/cpu.h"
#include "arch/x86.h"

extern uint64_t gdt[];
extern struct descriptor_ptr gdt_ptr;

// Writes CPU |index|'s TSS descriptor and loads TR with it. CPL0.
void gdt_load_tss(uint32_t index, struct tss *tss);

#endif  // GUEST_ARCH_GDT_H_
