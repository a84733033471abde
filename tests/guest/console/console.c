#include "console/console.h"

#include <stdbool.h>
#include <stdint.h>

#include "arch/user.h"
#include "console/serial.h"
#include "kernel/spinlock.h"
#include "lib/format.h"

static struct spinlock console_lock;
static bool mid_line;  // the last byte written was not '\n' (under the lock)

struct console_write {
  const char *text;
  size_t len;
  bool emergency;
};

// CPL0: the UART is written from the kernel even for user callers. Formatting
// happens at the caller's CPL (native at CPL3), the port I/O here in one
// kernel_call per line: on this host CPL3 port I/O would trap per byte.
static uint64_t write_cpl0(uint64_t arg) {
  const struct console_write *w = (const struct console_write *)arg;
  bool locked = true;
  if (w->emergency) {
    locked = false;
    for (int i = 0; i < 100000 && !(locked = spin_trylock(&console_lock)); i++) cpu_relax();
    if (mid_line) serial_write("\n", 1);  // the result line starts a line
  } else {
    spin_lock(&console_lock);
  }
  serial_write(w->text, w->len);
  if (w->len) mid_line = w->text[w->len - 1] != '\n';
  if (locked) spin_unlock(&console_lock);
  return 0;
}

static void write_formatted(bool emergency, const char *fmt, va_list ap) {
  char buf[PRINTK_MAX];
  struct console_write w = {buf, vformat(buf, sizeof(buf), fmt, ap), emergency};
  kernel_call(write_cpl0, (uint64_t)&w);
}

void vprintk(const char *fmt, va_list ap) { write_formatted(false, fmt, ap); }

void printk(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_formatted(false, fmt, ap);
  va_end(ap);
}

void printk_emergency(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_formatted(true, fmt, ap);
  va_end(ap);
}
