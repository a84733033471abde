// Polled driver for the 8250/16550 UART at COM1 (I/O port 0x3f8), the guest's
// console. Polling only: THRE (LSR bit 5) before every write. The register
// layout and init sequence follow Linux's drivers/tty/serial/8250 and
// arch/x86/boot/early_serial_console.c. Usable at CPL0 and at CPL3 (IOPL 3).
#ifndef GUEST_CONSOLE_SERIAL_H_
#define GUEST_CONSOLE_SERIAL_H_

#include <stdbool.h>
#include <stddef.h>

void serial_init(void);
void serial_putc(char c);
// Writes |n| bytes, turning "\n" into "\r\n".
void serial_write(const char *s, size_t n);
// Returns a received byte, or -1 if none is waiting (LSR bit 0).
int serial_try_getc(void);

#endif  // GUEST_CONSOLE_SERIAL_H_
