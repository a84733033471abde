// The BSP's path from the entry stubs (boot/entry.S) to the chosen scenario.
// Everything here runs at CPL0, which this host emulates instruction by
// instruction: keep it short.
#include <stdint.h>

#include "arch/cpu.h"
#include "boot/boot_info.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "console/serial.h"
#include "intr/idt.h"
#include "intr/lapic.h"
#include "intr/pic.h"
#include "kernel/heap.h"
#include "kernel/test.h"
#include "lib/string.h"
#include "scenarios/scenario.h"

#define DEFAULT_SCENARIO "serial"

void kernel_main(uint64_t boot_ptr, int protocol) __attribute__((noreturn));
void kernel_main(uint64_t boot_ptr, int protocol) {
  cpu_init(0);
  serial_init();
  const char *err = boot_info_init(protocol, boot_ptr);
  if (err) test_fail("%s", err);
  heap_init();
  pic_disable();
  lapic_enable();
  cpus[0].apic_id = lapic_id();
  cpus[0].online = true;

  static char name[32];
  if (!cmdline_get("hearth.test", name, sizeof(name)) || name[0] == '\0') {
    memcpy(name, DEFAULT_SCENARIO, sizeof(DEFAULT_SCENARIO));
  }
  test_name = name;
  printk("hearth-guest: boot=%s test=%s\n", boot_protocol_name(protocol), name);
  const struct scenario *s = scenario_find(name);
  if (s == NULL) test_fail("unknown scenario");
  s->run();
  test_fail("scenario returned without a result");
}
