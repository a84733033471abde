// Thin inline wrappers around the x86 instructions the guest uses.
//
// Only instructions that this host's KVM instruction emulator handles at CPL0
// belong here (ENVIRONMENT.md): no xsave/xrstor, int3, popcnt, cmpxchg16b,
// rdrand, and no mfence/lfence/sfence (group 15 with mod=3 is not emulated).
// The build greps the disassembly for them (see BUILD.bazel).
#ifndef GUEST_ARCH_X86_H_
#define GUEST_ARCH_X86_H_

#include <stdint.h>

#define RFLAGS_IF (1u << 9)
#define RFLAGS_IOPL3 (3u << 12)

static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v) {
  __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

// Port I/O at CPL3: the guest enters user mode with IOPL 3, which hardware
// honours; this host (PVM) runs user code with IOPL 0, so there in/out raise
// #GP and arch/user_io.c performs them at CPL0 (slowly: one trap each).

// MMIO: volatile accesses, never merged or split by the compiler.
static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uint64_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

// Current privilege level, from the low bits of CS. Works at CPL0 and CPL3.
static inline unsigned current_cpl(void) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  return cs & 3;
}

// The rest are privileged: CPL0 only.
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
// sti takes effect after the next instruction, so no interrupt is lost
// between the two.
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

static inline uint64_t read_rflags(void) {
  uint64_t f;
  __asm__ volatile("pushfq; popq %0" : "=r"(f));
  return f;
}

static inline uint64_t rdmsr(uint32_t msr) {
  uint32_t lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v) {
  __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

struct __attribute__((packed)) descriptor_ptr {
  uint16_t limit;
  uint64_t base;
};

static inline void lidt(const struct descriptor_ptr *p) {
  __asm__ volatile("lidt %0" : : "m"(*p) : "memory");
}
static inline void ltr(uint16_t sel) { __asm__ volatile("ltr %0" : : "r"(sel)); }

#endif  // GUEST_ARCH_X86_H_
