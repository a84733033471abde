// Low-level half of arch/user.c.
#include "kernel/layout.h"
#include "arch/user.h"

  .text
  .code64

// uint64_t user_enter(user_fn fn, uint64_t arg, uint64_t user_rsp,
//                     uint64_t *resume_rsp, uint64_t *tss_rsp0)
// Saves the callee-saved registers and flags, records the kernel stack
// pointer in *resume_rsp and *tss_rsp0 (so interrupts and user gate calls from CPL3
// are pushed below this frame) and irets to user_trampoline at CPL3.
// user_resume() comes back here.
  .globl user_enter
user_enter:
  pushfq
  movq (%rsp), %r9      // caller's rflags
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rcx)
  movq %rsp, (%r8)
  pushq $SEL_USER_DATA  // ss
  pushq %rdx            // rsp
  movq %r9, %rax
  andq $0x200, %rax     // keep IF only: no TF, NT, AC, DF
  orq $0x3002, %rax     // IOPL 3, reserved bit 1
  pushq %rax            // rflags
  pushq $SEL_USER_CODE  // cs
  leaq user_trampoline(%rip), %rax
  pushq %rax            // rip
  movq %rdi, %rax       // fn
  movq %rsi, %rdi       // arg
  movq %rax, %rsi
  iretq

// CPL3: call fn(arg), then hand its result back to the kernel.
user_trampoline:
  call *%rsi
  movq %rax, %rdi
  movl $SYS_USER_RETURN, %eax
  call user_gate
  ud2  // not reached

// The way from CPL3 into the kernel: rax = SYS_* number, rdi/rsi = arguments,
// result in rax; other registers are preserved. On this host (PVM) neither
// "int $n" (it raises #UD) nor "syscall" (it runs the kernel entry at CPL3)
// work from user mode, but exceptions are delivered to the IDT at CPL0 as on
// hardware. So the gate is a ud2 at this known address: the #UD handler sees
// CPL3 and rip == user_gate, handles the call, and resumes at the ret.
  .globl user_gate
user_gate:
  ud2
  ret

// void user_resume(uint64_t resume_rsp, uint64_t value): CPL0, never returns;
// continues in user_enter's caller with |value| as the result.
  .globl user_resume
user_resume:
  movq %rdi, %rsp
  movq %rsi, %rax
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  popfq
  ret
