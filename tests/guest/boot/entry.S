// Entry points of the test guest.
//
// entry64     e_entry. Linux 64-bit boot protocol (Documentation/arch/x86/
//             boot.rst, "64-bit boot protocol"): long mode, interrupts off,
//             RSI = struct boot_params. This is how Hearth's VMM enters.
// pvh_entry32 named by the Xen PHYS32_ENTRY ELF note. PVH (xen/include/public/
//             arch-x86/hvm/start_info.h): 32-bit protected mode, paging off,
//             EBX = struct hvm_start_info. This is how QEMU's microvm enters.
//
// Both switch to the guest's own GDT, page tables and BSP kernel stack at once
// (the VMM's are trusted for no longer than that) and call
// kernel_main(boot structure address, protocol).
#include "kernel/layout.h"
#include "boot/boot_info.h"
#include "boot/long_mode.inc"

#define BSP_STACK_TOP (cpu_stacks + STACK_SIZE - 16)  // cpu 0's kernel stack

  .section .text.entry, "ax"
  .code64
  .globl entry64
entry64:
  cli
  cld
  lgdt gdt_ptr(%rip)
  movl $SEL_KERNEL_DATA, %eax
  movl %eax, %ds
  movl %eax, %es
  movl %eax, %ss
  movl %eax, %fs
  movl %eax, %gs
  leaq pml4(%rip), %rax
  movq %rax, %cr3
  leaq BSP_STACK_TOP(%rip), %rsp
  pushq $SEL_KERNEL_CODE  // reload CS from our GDT
  leaq 1f(%rip), %rax
  pushq %rax
  lretq
1:
  movq %rsi, %rdi  // struct boot_params *
  movl $BOOT_PROTOCOL_LINUX64, %esi
  call kernel_main
  jmp halt_forever

  .code32
  .globl pvh_entry32
pvh_entry32:
  cli
  cld
  lgdt gdt_ptr  // 32-bit lgdt reads the low 4 bytes of the base: fine below 4 GiB
  ljmp $SEL_KERNEL_CODE32, $1f
1:
  ENABLE_LONG_MODE pvh_entry64

  .code64
pvh_entry64:
  leaq BSP_STACK_TOP(%rip), %rsp
  movl %ebx, %edi  // struct hvm_start_info *, zero-extended
  movl $BOOT_PROTOCOL_PVH, %esi
  call kernel_main
  jmp halt_forever

  .globl halt_forever
halt_forever:  // CPL0 only
  cli
  hlt
  jmp halt_forever

// The PVH entry note. QEMU reads the descriptor as a 64-bit value and aligns
// the name by the segment's p_align, so: 4-byte name, 4-byte alignment, .quad
// (Linux does the same in arch/x86/platform/pvh/head.S).
  .section .note.pvh, "a", @note
  .balign 4
  .long 4                // n_namesz: "Xen\0"
  .long 8                // n_descsz
  .long 18               // n_type: XEN_ELFNOTE_PHYS32_ENTRY
  .asciz "Xen"
  .balign 4
  .quad pvh_entry32

// Identity map of [0, 4 GiB) with 2 MiB pages, built by the assembler so that
// no CPL0 instruction is spent on it (CPL0 is emulated on this host). U/S is
// set everywhere so CPL3 code can reach RAM and MMIO; [3 GiB, 4 GiB) is
// uncached (PCD|PWT, PAT entry 3 = UC at reset) for the MMIO hole.
#define PTE_P 0x1
#define PTE_RW 0x2
#define PTE_US 0x4
#define PTE_PWT 0x8
#define PTE_PCD 0x10
#define PTE_PS 0x80
#define PTE_TABLE (PTE_P | PTE_RW | PTE_US)
#define PTE_2M_WB (PTE_P | PTE_RW | PTE_US | PTE_PS)
#define PTE_2M_UC (PTE_2M_WB | PTE_PCD | PTE_PWT)

  .section .data.page_aligned, "aw"
  .balign 4096
  .globl pml4
pml4:
  .quad pdpt + PTE_TABLE
  .fill 511, 8, 0
pdpt:
  .quad pd + PTE_TABLE
  .quad pd + 0x1000 + PTE_TABLE
  .quad pd + 0x2000 + PTE_TABLE
  .quad pd + 0x3000 + PTE_TABLE
  .fill 508, 8, 0
pd:
  .set page, 0
  .rept 3 * 512           // [0, 3 GiB): RAM, write-back
  .quad page + PTE_2M_WB
  .set page, page + 0x200000
  .endr
  .rept 512               // [3 GiB, 4 GiB): MMIO, uncached
  .quad page + PTE_2M_UC
  .set page, page + 0x200000
  .endr
