// Per-CPU state: one struct cpu and three stacks per CPU, indexed by the order
// in which CPUs were brought up (0 = BSP), not by LAPIC ID.
//
// Every stack is STACK_SIZE bytes, aligned to STACK_SIZE, and holds a pointer
// to its struct cpu in its top 16 bytes, so this_cpu() works on any of them at
// any privilege level without MSRs or segment bases.
#ifndef GUEST_ARCH_CPU_H_
#define GUEST_ARCH_CPU_H_

#include <stdbool.h>
#include <stdint.h>

#include "kernel/layout.h"

// 64-bit TSS (Intel SDM Vol. 3A 8.7, "Task Management in 64-bit Mode").
struct __attribute__((packed)) tss {
  uint32_t reserved0;
  uint64_t rsp0;  // stack for interrupts and exceptions from CPL3
  uint64_t rsp1;
  uint64_t rsp2;
  uint64_t reserved1;
  uint64_t ist[7];  // ist[0] is IST1: #DF, NMI, #MC
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iomap_base;  // past the limit: no I/O bitmap, IOPL decides
};

struct cpu {
  uint32_t index;
  uint32_t apic_id;  // read from the LAPIC ID register
  volatile bool online;
  struct tss tss;
  uint64_t user_resume_rsp;  // kernel rsp to return to when user code ends
};

struct cpu_stacks {
  uint8_t kernel[STACK_SIZE];
  uint8_t user[STACK_SIZE];
  uint8_t ist[STACK_SIZE];
};

extern struct cpu cpus[MAX_CPUS];
extern struct cpu_stacks cpu_stacks[MAX_CPUS];

// Initial rsp of a stack: below the 16-byte slot that holds the cpu pointer.
static inline uint64_t stack_top(uint8_t *stack) { return (uint64_t)(stack + STACK_SIZE - 16); }

static inline struct cpu *this_cpu(void) {
  uint64_t sp;
  __asm__("movq %%rsp, %0" : "=r"(sp));
  return *(struct cpu **)((sp | (STACK_SIZE - 1)) - 15);
}

// Sets up CPU |index| on the calling CPU, which must be running on that CPU's
// kernel stack with interrupts off: writes the cpu pointers into its stacks,
// installs its TSS in the GDT, loads TR and the IDT. CPL0.
void cpu_init(uint32_t index);

#endif  // GUEST_ARCH_CPU_H_
