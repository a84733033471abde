#include "intr/idt.h"

#include "arch/user.h"
#include "arch/x86.h"
#include "console/console.h"
#include "intr/lapic.h"
#include "kernel/layout.h"
#include "kernel/test.h"

extern const char idt_table[], idt_table_end[];  // intr/vectors.S

static irq_handler irq_handlers[64];
static void *irq_contexts[64];
static exception_hook exception_hooks[32];

void idt_load(void) {
  struct descriptor_ptr p = {(uint16_t)(idt_table_end - idt_table - 1), (uint64_t)idt_table};
  lidt(&p);
}

void irq_register(unsigned vector, irq_handler fn, void *ctx) {
  if (vector < 32 || vector >= 64) test_fail("irq_register: bad vector %u", vector);
  irq_contexts[vector] = ctx;
  irq_handlers[vector] = fn;
}

void exception_set_hook(unsigned vector, exception_hook hook) {
  if (vector < 32) exception_hooks[vector] = hook;
}

void trap_dispatch(struct trap_frame *f) {
  unsigned v = (unsigned)f->vector;
  if (v < 32) {
    if (v == EXC_UD && user_gate_dispatch(f)) return;
    if (v == EXC_GP && user_io_emulate(f)) return;
    if (exception_hooks[v] && exception_hooks[v](f)) return;
    test_fail_exception(f);
  }
  if (v == VEC_SPURIOUS) return;  // no EOI for spurious interrupts (SDM 11.9)
  if (v < 64 && irq_handlers[v]) {
    irq_handlers[v](f, irq_contexts[v]);
  } else {
    // Emergency: the interrupted code may hold the console lock.
    printk_emergency("hearth-guest: unexpected interrupt, vector %u\n", v);
  }
  lapic_eoi();
}
