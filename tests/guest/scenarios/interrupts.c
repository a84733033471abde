// Interrupt delivery, the path every device driver depends on.
//
// timer:      the LAPIC timer (one-shot, vector VEC_LAPIC_TIMER) fires while
//             the CPU sleeps in hlt at CPL0, and again while it spins at
//             CPL3 (the interrupt switches to TSS.rsp0 and irets back).
// serial_irq: the UART's "transmit holding register empty" interrupt (IER
//             bit 1) arrives through the I/O APIC: GSI 4 routed to vector
//             VEC_IRQ_BASE + 4 on the BSP, as a virtio-mmio driver would route
//             its GSI. A LAPIC timer watchdog turns a missing interrupt into a
//             FAIL instead of a hang.
#include <stddef.h>
#include <stdint.h>

#include "arch/cpu.h"
#include "arch/user.h"
#include "arch/x86.h"
#include "console/console.h"
#include "intr/idt.h"
#include "intr/ioapic.h"
#include "intr/lapic.h"
#include "kernel/layout.h"
#include "kernel/test.h"
#include "scenarios/scenario.h"

#define TIMER_TICKS 1000000u       // 1 ms at KVM's 1 GHz LAPIC timer clock
#define WATCHDOG_TICKS 200000000u  // 200 ms
#define SPIN_TIMEOUT_TSC 2000000000ull

static volatile uint32_t timer_count;
static volatile uint64_t timer_cpl_seen;  // bit n set: timer interrupted CPL n

static void on_timer(struct trap_frame *f, void *ctx) {
  (void)ctx;
  timer_cpl_seen |= 1u << (f->cs & 3);
  timer_count++;
}

// CPL0, interrupts off on entry and exit: sleeps until *flag changes or the
// timer (armed by the caller) has fired |timer_target| times.
static void sleep_until(volatile uint32_t *flag, uint32_t timer_target) {
  while (!*flag && timer_count < timer_target) {
    sti_hlt();
    cli();
  }
}

static uint64_t spin_at_cpl3(uint64_t target) {
  uint64_t start = rdtsc();
  while (timer_count < target && rdtsc() - start < SPIN_TIMEOUT_TSC) cpu_relax();
  return rdtsc() - start;
}

static void timer(void) {
  irq_register(VEC_LAPIC_TIMER, on_timer, NULL);
  static volatile uint32_t never;
  uint64_t start = rdtsc();
  lapic_timer_oneshot(TIMER_TICKS, VEC_LAPIC_TIMER);
  sleep_until(&never, 1);
  uint64_t cycles = rdtsc() - start;
  printk("timer: %u ticks at cpl 0 took %lu tsc cycles\n", TIMER_TICKS, cycles);

  lapic_timer_oneshot(TIMER_TICKS, VEC_LAPIC_TIMER);
  sti();  // user_call passes IF on to user mode
  cycles = user_call(spin_at_cpl3, 2);
  cli();
  printk("timer: %u ticks at cpl 3 took %lu tsc cycles\n", TIMER_TICKS, cycles);
  if (timer_count < 2) test_fail("timer did not fire while at cpl 3");
  if (!(timer_cpl_seen & (1u << 3))) test_fail("timer never interrupted cpl 3 code");
  test_pass();
}
SCENARIO(timer, timer);

#define SERIAL_GSI 4
#define UART_IER (COM1_PORT + 1)
#define UART_IIR (COM1_PORT + 2)
#define IER_THRI 0x02

static volatile uint32_t serial_irqs;

static void on_serial(struct trap_frame *f, void *ctx) {
  (void)f;
  (void)ctx;
  outb(UART_IER, 0);  // one is enough; reading IIR clears THRE
  (void)inb(UART_IIR);
  serial_irqs++;
}

static void serial_irq(void) {
  unsigned pins = ioapic_num_pins();
  printk("serial_irq: I/O APIC id %u version 0x%x, %u pins\n", ioapic_id(), ioapic_version() & 0xff,
         pins);
  if (pins < NUM_GSIS) test_fail("I/O APIC has %u pins, want %u", pins, NUM_GSIS);
  irq_register(VEC_LAPIC_TIMER, on_timer, NULL);
  irq_register(VEC_IRQ_BASE + SERIAL_GSI, on_serial, NULL);
  ioapic_route(SERIAL_GSI, VEC_IRQ_BASE + SERIAL_GSI, cpus[0].apic_id, false);
  lapic_timer_oneshot(WATCHDOG_TICKS, VEC_LAPIC_TIMER);
  outb(UART_IER, IER_THRI);  // THR is empty: the UART raises its line now
  sleep_until(&serial_irqs, 1);
  lapic_timer_stop();
  ioapic_mask(SERIAL_GSI);
  if (serial_irqs == 0) test_fail("no interrupt on GSI %u within 200 ms", SERIAL_GSI);
  printk("serial_irq: %u interrupt(s) on vector 0x%x\n", serial_irqs, VEC_IRQ_BASE + SERIAL_GSI);
  test_pass();
}
SCENARIO(serial_irq, serial_irq);
