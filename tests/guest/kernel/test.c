#include "kernel/test.h"

#include <stdarg.h>
#include <stdint.h>

#include "arch/user.h"
#include "arch/x86.h"
#include "console/console.h"
#include "kernel/layout.h"
#include "lib/format.h"

const char *test_name = "boot";
static volatile uint32_t result_reported;

// Only the first reporter prints; any other CPU stops here.
static void claim_result(void) {
  if (__atomic_exchange_n(&result_reported, 1, __ATOMIC_ACQ_REL) != 0) halt_forever_any_cpl();
}

static uint64_t reset_cpl0(uint64_t unused) {
  (void)unused;
  outb(I8042_COMMAND_PORT, 0xfe);  // pulse the reset line
  // Still here: no i8042. QEMU's isa-debug-exit exits with (value << 1) | 1.
  outl(QEMU_DEBUG_EXIT_PORT, 0);
  halt_forever_any_cpl();
}

void machine_reset(void) {
  kernel_call(reset_cpl0, 0);
  halt_forever_any_cpl();  // not reached
}

void test_pass(void) {
  claim_result();
  printk_emergency("HEARTH-TEST-PASS %s\n", test_name);
  machine_reset();
}

void test_fail(const char *fmt, ...) {
  claim_result();
  char reason[160];
  va_list ap;
  va_start(ap, fmt);
  vformat(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  printk_emergency("HEARTH-TEST-FAIL %s %s\n", test_name, reason);
  machine_reset();
}

void test_fail_exception(struct trap_frame *f) {
  uint64_t cr2;
  __asm__ volatile("movq %%cr2, %0" : "=r"(cr2));  // handlers run at CPL0
  printk_emergency("hearth-guest: exception %lu at cpl %lu rip=0x%lx rsp=0x%lx cr2=0x%lx\n",
                   f->vector, f->cs & 3, f->rip, f->rsp, cr2);
  test_fail("exception %lu rip=0x%lx err=0x%lx", f->vector, f->rip, f->error);
}
