// Running code at CPL3, where this host runs guest code natively (CPL0 is
// emulated at ~1.6 M instructions/s). Put hot loops in a user_fn.
//
// user_call() enters CPL3 with iretq (user segments, IF as the caller had it,
// IOPL 3 so in/out work: natively on hardware KVM, trapped and performed by
// arch/user_io.c on this host) on the CPU's user stack. The function's return
// goes through the user gate (a ud2 at a known address; user_entry.S says why
// not int $0x80 or syscall), which lands back in the kernel on TSS.rsp0 and
// returns the value from user_call(). Memory is shared: the identity map has
// U/S set everywhere, so user code reads and writes all RAM and MMIO.
//
// From CPL3, kernel_call() runs a function at CPL0 (hlt, lidt, wrmsr, a burst
// of port I/O) and returns to CPL3 with its result; on this host one round
// trip costs a few hundred emulated instructions.
#ifndef GUEST_ARCH_USER_H_
#define GUEST_ARCH_USER_H_

// User gate call numbers (rax); arguments in rdi, rsi.
#define SYS_USER_RETURN 0  // rdi = value returned by the user_fn
#define SYS_KERNEL_CALL 1  // rdi = fn, rsi = arg; result in rax
#define SYS_HALT 2

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

#include "intr/idt.h"

typedef uint64_t (*user_fn)(uint64_t arg);

// CPL0 only. Does not nest (a kernel_call() from user code must not call it).
uint64_t user_call(user_fn fn, uint64_t arg);
// Any CPL: at CPL0 a plain call.
uint64_t kernel_call(user_fn fn, uint64_t arg);
// Halts the CPU forever with interrupts off, from any CPL.
void halt_forever_any_cpl(void) __attribute__((noreturn));

// Called by trap_dispatch() for #UD. Returns false if this #UD is not a call
// through the user gate (a real invalid opcode).
bool user_gate_dispatch(struct trap_frame *frame);
// Called by trap_dispatch() for #GP: performs an in/out that CPL3 was not
// allowed to (arch/user_io.c). Returns false for any other #GP.
bool user_io_emulate(struct trap_frame *frame);

#endif  // __ASSEMBLER__
#endif  // GUEST_ARCH_USER_H_
