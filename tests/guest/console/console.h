// Line-oriented console output on the serial port, shared by all CPUs.
// Each printk() call is written whole under a lock, so lines from different
// CPUs never interleave. Works at CPL0 and CPL3 (formats at the caller's CPL,
// writes the UART at CPL0 through one kernel_call).
#ifndef GUEST_CONSOLE_CONSOLE_H_
#define GUEST_CONSOLE_CONSOLE_H_

#include <stdarg.h>

#define PRINTK_MAX 256  // longer messages are truncated

void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintk(const char *fmt, va_list ap);
// For the fatal paths (exception handlers, test end): takes the lock if it
// can within a bounded time, else writes anyway, so a CPU that died holding
// the lock cannot hide the failure line. Starts a new line first if the
// console is in the middle of one.
void printk_emergency(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif  // GUEST_CONSOLE_CONSOLE_H_
