// Interrupt entry stubs and the IDT itself.
//
// Vectors 0-63 exist: exceptions (0-31), IOAPIC GSIs, LAPIC timer, IPIs and
// the LAPIC spurious vector (kernel/layout.h). Each stub pushes a dummy error
// code where the CPU pushes none, then its vector, so every handler sees the
// same struct trap_frame (intr/idt.h) and trap_dispatch() decides. Vectors
// from 64 up are beyond the IDT limit (#GP).
//
// The stubs sit in 16-byte slots at ISR_STUB_BASE (first in the image, see
// guest.ld), so the assembler can write the whole IDT as constants: no CPL0
// instruction is spent filling it (filling 64 gates took ~1 ms of emulated
// CPL0 time on this host).
#include "kernel/layout.h"

  .altmacro  // lets "%expr" pass a computed vector number to a macro

#define NUM_VECTORS 64
#define STUB_SLOT 16

.macro STUB vector
  .org \vector * STUB_SLOT  // fails to assemble if a stub outgrew its slot
  // Exceptions with an error code (SDM Vol. 3A table 6-1).
  .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
  .else
  pushq $0
  .endif
  pushq $\vector
  jmp isr_common
.endm

  .section .text.isr, "ax"
  .code64
  .globl isr_stubs
isr_stubs:
  .set vec, 0
  .rept NUM_VECTORS
  STUB %vec
  .set vec, vec + 1
  .endr

  .text
isr_common:
  pushq %rax
  pushq %rbx
  pushq %rcx
  pushq %rdx
  pushq %rsi
  pushq %rdi
  pushq %rbp
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  cld
  movq %rsp, %rdi
  call trap_dispatch
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rbp
  popq %rdi
  popq %rsi
  popq %rdx
  popq %rcx
  popq %rbx
  popq %rax
  addq $16, %rsp  // vector, error code
  iretq

// 64-bit interrupt gates (SDM Vol. 3A 6.14.1): present, DPL 0, type 0xe
// (IF cleared on entry), kernel code selector. NMI, #DF and #MC use IST1,
// the per-CPU IST stack, so a broken kernel stack still gives a readable
// failure line instead of a triple fault. DPL 0 everywhere: "int $n" from
// CPL3 is not a way into the kernel (see arch/user_entry.S).
.macro GATE vector
  .word (ISR_STUB_BASE + \vector * STUB_SLOT) & 0xffff
  .word SEL_KERNEL_CODE
  .if (\vector == 2) || (\vector == 8) || (\vector == 18)
  .byte 1
  .else
  .byte 0
  .endif
  .byte 0x8e
  .word ((ISR_STUB_BASE + \vector * STUB_SLOT) >> 16) & 0xffff
  .long 0  // offset 63:32: the image is below 4 GiB
  .long 0
.endm

  .section .rodata
  .balign 16
  .globl idt_table, idt_table_end
idt_table:
  .set vec, 0
  .rept NUM_VECTORS
  GATE %vec
  .set vec, vec + 1
  .endr
idt_table_end:

  .if VEC_SPURIOUS >= NUM_VECTORS
  .error "VEC_SPURIOUS must have a stub"
  .endif
