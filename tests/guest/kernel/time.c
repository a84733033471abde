#include "kernel/time.h"

#include "arch/user.h"
#include "arch/x86.h"
#include "intr/idt.h"
#include "intr/lapic.h"
#include "kernel/layout.h"

#define LAPIC_TICKS_PER_MS 1000000ull  // 1 GHz (intr/lapic.h)
#define CALIBRATE_TICKS 5000000u       // 5 ms
#define MAX_ALARM_TICKS 1000000000ull  // re-arm at least every second

static uint64_t tsc_per_ms;

static void on_alarm(struct trap_frame *f, void *ctx) {
  (void)f;
  (void)ctx;  // only wakes the CPU from hlt
}

// Reads (TSC, LAPIC count) as close together as the exit costs allow: the
// TSC sample is the midpoint of two reads around the MMIO read.
static void sample(uint64_t *tsc, uint32_t *count) {
  uint64_t a = rdtsc();
  *count = lapic_timer_current();
  *tsc = a + (rdtsc() - a) / 2;
}

static uint64_t calibrate(uint64_t unused) {
  (void)unused;
  uint64_t t0, t1;
  uint32_t c0, c1;
  lapic_timer_free_run();
  sample(&t0, &c0);
  do {
    sample(&t1, &c1);
  } while (c0 - c1 < CALIBRATE_TICKS);
  lapic_timer_stop();
  return (t1 - t0) * LAPIC_TICKS_PER_MS / (c0 - c1);
}

void time_init(void) {
  if (tsc_per_ms != 0) return;
  irq_register(VEC_LAPIC_TIMER, on_alarm, 0);
  tsc_per_ms = current_cpl() == 0 ? user_call(calibrate, 0) : calibrate(0);
  if (tsc_per_ms == 0) tsc_per_ms = 1;
}

uint64_t time_tsc_per_ms(void) { return tsc_per_ms; }
uint64_t time_us(void) { return rdtsc() * 1000 / tsc_per_ms; }
uint64_t time_ms(void) { return rdtsc() / tsc_per_ms; }
uint64_t time_deadline_us(uint64_t us) { return rdtsc() + us * tsc_per_ms / 1000; }
bool time_passed(uint64_t deadline_tsc) { return (int64_t)(rdtsc() - deadline_tsc) >= 0; }

uint64_t time_left_us(uint64_t deadline_tsc) {
  int64_t left = (int64_t)(deadline_tsc - rdtsc());
  return left > 0 ? (uint64_t)left * 1000 / tsc_per_ms : 0;
}

void time_delay_us(uint64_t us) {
  uint64_t deadline = time_deadline_us(us);
  while (!time_passed(deadline)) cpu_relax();
}

struct wait_counter {
  volatile uint32_t *counter;
  uint32_t snapshot;
  uint64_t deadline;
};

// CPL0. The counter is checked with interrupts off and sti;hlt is atomic
// with respect to interrupts (sti takes effect after hlt starts), so a change
// after the check still wakes the CPU. Restores the caller's IF.
static uint64_t wait_counter_cpl0(uint64_t arg) {
  struct wait_counter *w = (struct wait_counter *)arg;
  uint64_t flags = read_rflags();
  bool moved;
  cli();
  for (;;) {
    moved = *w->counter != w->snapshot;
    int64_t left = (int64_t)(w->deadline - rdtsc());
    if (moved || left <= 0) break;
    uint64_t ticks = (uint64_t)left * LAPIC_TICKS_PER_MS / tsc_per_ms + 1;
    if (ticks > MAX_ALARM_TICKS) ticks = MAX_ALARM_TICKS;
    lapic_timer_oneshot((uint32_t)ticks, VEC_LAPIC_TIMER);
    sti_hlt();
    cli();
  }
  lapic_timer_stop();
  if (flags & RFLAGS_IF) sti();
  return moved;
}

bool time_wait_counter(volatile uint32_t *counter, uint32_t snapshot, uint64_t deadline_tsc) {
  if (*counter != snapshot) return true;
  struct wait_counter w = {counter, snapshot, deadline_tsc};
  return kernel_call(wait_counter_cpl0, (uint64_t)&w) != 0;
}
