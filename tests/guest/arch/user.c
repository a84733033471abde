#include "arch/user.h"

#include <stddef.h>

#include "arch/cpu.h"
#include "arch/x86.h"
#include "kernel/test.h"

uint64_t user_enter(user_fn fn, uint64_t arg, uint64_t user_rsp, uint64_t *resume_rsp,
                    void *tss_rsp0);
void user_resume(uint64_t resume_rsp, uint64_t value) __attribute__((noreturn));
void halt_forever(void) __attribute__((noreturn));  // boot/entry.S
extern const char user_gate[];                      // arch/user_entry.S

uint64_t user_call(user_fn fn, uint64_t arg) {
  struct cpu *c = this_cpu();
  // One level only: a nested call would reuse the user stack still in use.
  if (c->user_resume_rsp != 0) test_fail("user_call nested inside user code");
  uint64_t rsp0 = c->tss.rsp0;
  uint64_t user_rsp = stack_top(cpu_stacks[c->index].user);
  // tss.rsp0 sits at offset 4 of the packed TSS: pass its address untyped.
  void *rsp0_slot = (uint8_t *)&c->tss + offsetof(struct tss, rsp0);
  uint64_t r = user_enter(fn, arg, user_rsp, &c->user_resume_rsp, rsp0_slot);
  c->user_resume_rsp = 0;
  c->tss.rsp0 = rsp0;
  return r;
}

// Calls through the user gate (arch/user_entry.S) from CPL3.
static uint64_t gate_call(uint64_t nr, uint64_t a0, uint64_t a1) {
  __asm__ volatile("call user_gate" : "+a"(nr) : "D"(a0), "S"(a1) : "memory");
  return nr;
}

uint64_t kernel_call(user_fn fn, uint64_t arg) {
  if (current_cpl() == 0) return fn(arg);
  return gate_call(SYS_KERNEL_CALL, (uint64_t)fn, arg);
}

void halt_forever_any_cpl(void) {
  if (current_cpl() == 0) halt_forever();
  for (;;) gate_call(SYS_HALT, 0, 0);
}

bool user_gate_dispatch(struct trap_frame *f) {
  if ((f->cs & 3) != 3 || f->rip != (uint64_t)user_gate) return false;
  f->rip += 2;  // resume at the ret after the ud2
  struct cpu *c = this_cpu();
  switch (f->rax) {
    case SYS_USER_RETURN:
      user_resume(c->user_resume_rsp, f->rdi);
    case SYS_KERNEL_CALL:
      f->rax = ((user_fn)f->rdi)(f->rsi);
      return true;
    case SYS_HALT:
      halt_forever();
    default:
      test_fail("unknown user gate call %lu", f->rax);
  }
}
