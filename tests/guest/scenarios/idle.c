// idle: a guest that stays up until it is told to stop, for the agent's
// tests (pause/resume, console streaming, Ctrl-Alt-Del, re-attach after an
// agent restart). It
//   * prints "idle: ready", then "idle: tick N" every hearth.tick_ms
//     (default 1000) from a counter kept in RAM, so a test sees that the
//     same guest keeps running (no reboot: N only grows);
//   * echoes each line it receives on the serial port as "idle: echo LINE";
//   * on the i8042's Ctrl-Alt-Del scancodes (set 2: 14 11 e0 71) prints
//     "idle: ctrl-alt-del" and ends with PASS and a reset, as a Linux guest
//     reboots on Ctrl-Alt-Del.
// It sleeps in hlt between 50 ms wake-ups and polls both devices then.
#include <stdint.h>

#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "console/serial.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "scenarios/scenario.h"

#define I8042_DATA 0x60
#define I8042_STATUS 0x64
#define I8042_OUTPUT_FULL 0x01
#define POLL_US 50000u

static const uint8_t kCtrlAltDel[] = {0x14, 0x11, 0xe0, 0x71};

static void idle(void) {
  uint64_t tick_ms = 1000;
  cmdline_get_u64("hearth.tick_ms", &tick_ms);
  if (tick_ms == 0) tick_ms = 1;
  time_init();
  printk("idle: ready\n");
  static volatile uint32_t never;  // nothing moves it: waits end on the deadline
  uint64_t ticks = 0;
  uint64_t next_tick = time_deadline_us(tick_ms * 1000);
  char line[128];
  unsigned length = 0;
  uint8_t recent[sizeof(kCtrlAltDel)] = {0};
  for (;;) {
    time_wait_counter(&never, 0, time_deadline_us(POLL_US));
    // QEMU's microvm has no i8042: the port reads 0xff (output full, forever).
    uint8_t status;
    while (((status = inb(I8042_STATUS)) & I8042_OUTPUT_FULL) != 0 && status != 0xff) {
      for (unsigned i = 0; i + 1 < sizeof(recent); i++) recent[i] = recent[i + 1];
      recent[sizeof(recent) - 1] = inb(I8042_DATA);
      int match = 1;
      for (unsigned i = 0; i < sizeof(recent); i++) match &= recent[i] == kCtrlAltDel[i];
      if (match) {
        printk("idle: ctrl-alt-del\n");
        test_pass();
      }
    }
    int c;
    while ((c = serial_try_getc()) >= 0) {
      if (c == '\r' || c == '\n') {
        if (length > 0) {
          line[length] = 0;
          printk("idle: echo %s\n", line);
        }
        length = 0;
      } else if (length + 1 < sizeof(line) && c >= 0x20 && c < 0x7f) {
        line[length++] = (char)c;
      }
    }
    if (time_passed(next_tick)) {
      printk("idle: tick %lu\n", ++ticks);
      next_tick = time_deadline_us(tick_ms * 1000);
    }
  }
}
SCENARIO(idle, idle);
