// Scenarios that end with a dead vCPU instead of a result line. The VMM must
// exit non-zero and say why; the harness asserts that no PASS line appears.
//
// On hardware KVM both end in a triple fault (KVM_EXIT_SHUTDOWN). On this
// host's emulated CPL0 (PVM), KVM may instead report an emulation failure
// (KVM_EXIT_INTERNAL_ERROR); either is a crash.
#include "arch/x86.h"
#include "console/console.h"
#include "scenarios/scenario.h"

// 256 not-present gates: #UD -> #NP -> #DF -> triple fault.
static struct { uint64_t low, high; } empty_idt[256] __attribute__((aligned(16)));

static void ud2(void) {
  printk("ud2: executing ud2 at cpl 0 with no #UD handler\n");
  struct descriptor_ptr p = {sizeof(empty_idt) - 1, (uint64_t)empty_idt};
  lidt(&p);
  __asm__ volatile("ud2");
  printk("ud2: still running after ud2\n");  // must not be reached
}
SCENARIO(ud2, ud2);

static void triple_fault(void) {
  printk("triple_fault: loading an empty IDT and faulting\n");
  struct descriptor_ptr p = {0, 0};  // limit 0: every vector is out of bounds
  lidt(&p);
  // A load from a non-canonical address raises #GP.
  uint64_t v = *(volatile uint64_t *)0x8000000000000000ull;
  printk("triple_fault: still running (read 0x%lx)\n", v);  // must not be reached
}
SCENARIO(triple_fault, triple_fault);
