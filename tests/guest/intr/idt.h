// The IDT and the C side of every interrupt and exception.
//
// Exceptions (vectors 0-31) end the test with
//   HEARTH-TEST-FAIL <scenario> exception <n> rip=<hex> err=<hex>
// unless a scenario installed a hook that claims it. Device and LAPIC
// interrupts (vectors 32-63) go to handlers registered with irq_register()
// and are acknowledged (LAPIC EOI) afterwards. A #UD raised by the user gate
// is a call from CPL3 into the kernel (arch/user.h).
#ifndef GUEST_INTR_IDT_H_
#define GUEST_INTR_IDT_H_

#include <stdbool.h>
#include <stdint.h>

// Layout pushed by the CPU and intr/vectors.S, lowest address first.
struct trap_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
  uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector;
  uint64_t error;  // 0 for vectors without an error code
  uint64_t rip, cs, rflags, rsp, ss;
};

// Exception numbers used by name.
#define EXC_UD 6
#define EXC_DF 8
#define EXC_NP 11
#define EXC_GP 13
#define EXC_PF 14

// Loads the IDT (one static table for all CPUs, intr/vectors.S). CPL0.
void idt_load(void);

typedef void (*irq_handler)(struct trap_frame *frame, void *ctx);
// Registers |fn| for device/LAPIC vector |vector| (32-63). One handler per
// vector; a later call replaces the earlier one.
void irq_register(unsigned vector, irq_handler fn, void *ctx);

// A scenario that expects an exception installs a hook; returning true means
// "handled, resume at frame->rip" (the hook may change it), false means fail.
typedef bool (*exception_hook)(struct trap_frame *frame);
void exception_set_hook(unsigned vector, exception_hook hook);

// Called from intr/vectors.S with interrupts off.
void trap_dispatch(struct trap_frame *frame);

#endif  // GUEST_INTR_IDT_H_
