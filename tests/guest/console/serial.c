#include "console/serial.h"

#include "arch/x86.h"
#include "kernel/layout.h"

// Register offsets from the base port (16550 datasheet).
#define UART_RBR 0  // receive buffer (read, DLAB=0)
#define UART_THR 0  // transmit holding (write, DLAB=0)
#define UART_DLL 0  // divisor latch low (DLAB=1)
#define UART_IER 1  // interrupt enable (DLAB=0)
#define UART_DLM 1  // divisor latch high (DLAB=1)
#define UART_FCR 2  // FIFO control (write)
#define UART_LCR 3  // line control
#define UART_MCR 4  // modem control
#define UART_LSR 5  // line status

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define FCR_ENABLE_CLEAR 0x07  // enable FIFOs, clear RX and TX
#define MCR_DTR_RTS_OUT2 0x0b
#define LSR_DR 0x01    // data ready
#define LSR_THRE 0x20  // transmit holding register empty

void serial_init(void) {
  const uint16_t port = COM1_PORT;
  outb(port + UART_LCR, LCR_8N1);  // DLAB off first, so IER is addressable
  outb(port + UART_IER, 0);        // polled: no interrupts
  outb(port + UART_FCR, FCR_ENABLE_CLEAR);
  outb(port + UART_MCR, MCR_DTR_RTS_OUT2);
  outb(port + UART_LCR, LCR_8N1 | LCR_DLAB);
  outb(port + UART_DLL, 1);  // 115200 baud = 1.8432 MHz / (16 * 1)
  outb(port + UART_DLM, 0);
  outb(port + UART_LCR, LCR_8N1);
}

void serial_putc(char c) {
  // Bounded wait: a UART model that never sets THRE must not hang the test
  // forever; after the bound the byte is written anyway.
  for (int i = 0; i < 100000 && !(inb(COM1_PORT + UART_LSR) & LSR_THRE); i++) {
    cpu_relax();
  }
  outb(COM1_PORT + UART_THR, (uint8_t)c);
}

void serial_write(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\n') serial_putc('\r');
    serial_putc(s[i]);
  }
}

int serial_try_getc(void) {
  if (!(inb(COM1_PORT + UART_LSR) & LSR_DR)) return -1;
  return inb(COM1_PORT + UART_RBR);
}
