// Scenarios that need nothing but the console: serial, reset, panic.
#include "arch/user.h"
#include "arch/x86.h"
#include "console/console.h"
#include "console/serial.h"
#include "kernel/test.h"
#include "lib/format.h"
#include "scenarios/scenario.h"

// CPL3: the UART driver called directly, not through printk's kernel_call.
static uint64_t print_line_3(uint64_t arg) {
  (void)arg;
  char line[48];
  serial_write(line, format(line, sizeof(line), "hearth serial line 3 (cpl %u)\n", current_cpl()));
  return current_cpl();
}

// A few known lines, then PASS. Line 3 is written by port I/O from CPL3
// (IOPL 3; trapped and performed by the kernel on this host, arch/user_io.c),
// the others from CPL0. Bytes already waiting on the UART's input are echoed
// back (none are required).
static void serial(void) {
  for (int i = 1; i <= 2; i++) printk("hearth serial line %d (cpl %u)\n", i, current_cpl());
  if (user_call(print_line_3, 0) != 3) test_fail("line 3 was not written at cpl 3");
  int c;
  for (int n = 0; n < 64 && (c = serial_try_getc()) >= 0; n++) {
    printk("hearth serial input 0x%02x\n", c);
  }
  test_pass();
}
SCENARIO(serial, serial);

// PASS, then the reset every test ends with: the VMM must exit 0 on it.
static void reset(void) { test_pass(); }
SCENARIO(reset, reset);

// A deliberate FAIL line followed by a normal reset: proves a harness judges
// the marker, not the VMM's exit code.
static void panic(void) { test_fail("deliberate"); }
SCENARIO(panic, panic);
