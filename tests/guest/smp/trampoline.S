// Application processor start-up.
//
// trampoline_start..trampoline_end is copied to TRAMPOLINE_BASE (below 1 MiB)
// and entered by a SIPI in real mode at CS:IP = (TRAMPOLINE_BASE >> 4):0. It
// loads the guest's GDT, enables protection and far-jumps to ap_entry32 in the
// image, which enables long mode, takes the stack the BSP left in ap_boot_rsp
// and calls ap_main(). SDM Vol. 3A 9.4.4 "MP Initialization Example".
#include "kernel/layout.h"
#include "boot/long_mode.inc"

// Addresses inside the copy, with DS = 0.
#define TRAMP(sym) (TRAMPOLINE_BASE + (sym - trampoline_start))

  .section .rodata
  .code16
  .globl trampoline_start, trampoline_end
trampoline_start:
  cli
  cld
  xorw %ax, %ax
  movw %ax, %ds
  lgdtl TRAMP(trampoline_gdt_ptr)
  movl %cr0, %eax
  orl $CR0_PE, %eax
  movl %eax, %cr0
  ljmpl $SEL_KERNEL_CODE32, $ap_entry32
  .balign 8
trampoline_gdt_ptr:
  .word GDT_BYTES - 1
  .long gdt
trampoline_end:

  .text
  .code32
ap_entry32:
  ENABLE_LONG_MODE ap_entry64

  .code64
ap_entry64:
  movq ap_boot_rsp(%rip), %rsp
  call ap_main
1:
  cli
  hlt
  jmp 1b
