#include "intr/lapic.h"

#include "arch/x86.h"
#include "kernel/layout.h"

#define LAPIC_ID 0x20
#define LAPIC_VERSION 0x30
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

#define SVR_ENABLE 0x100
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_LEVEL_ASSERT (1u << 14)
#define ICR_FIXED 0x000
#define ICR_INIT 0x500
#define ICR_STARTUP 0x600
#define LVT_MASKED (1u << 16)
#define LVT_TIMER_PERIODIC (1u << 17)
#define TIMER_DIVIDE_BY_1 0xb

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }
uint32_t lapic_version(void) { return lapic_read(LAPIC_VERSION); }

void lapic_enable(void) {
  lapic_write(LAPIC_TPR, 0);
  lapic_write(LAPIC_SVR, SVR_ENABLE | VEC_SPURIOUS);
}

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

static bool send_icr(uint32_t apic_id, uint32_t low) {
  lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
  lapic_write(LAPIC_ICR_LOW, low);  // this write sends the IPI
  for (int i = 0; i < 100000; i++) {
    if (!(lapic_read(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING)) return true;
    cpu_relax();
  }
  return false;
}

bool lapic_send_init(uint32_t apic_id) { return send_icr(apic_id, ICR_INIT | ICR_LEVEL_ASSERT); }

bool lapic_send_startup(uint32_t apic_id, uint32_t page) {
  return send_icr(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | (page & 0xff));
}

bool lapic_send_ipi(uint32_t apic_id, uint32_t vector) {
  return send_icr(apic_id, ICR_FIXED | ICR_LEVEL_ASSERT | (vector & 0xff));
}

static void timer_start(uint32_t count, uint32_t lvt) {
  lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
  lapic_write(LAPIC_LVT_TIMER, lvt);
  lapic_write(LAPIC_TIMER_INITIAL, count);  // this write starts the timer
}

void lapic_timer_oneshot(uint32_t count, uint32_t vector) { timer_start(count, vector & 0xff); }

void lapic_timer_periodic(uint32_t count, uint32_t vector) {
  timer_start(count, LVT_TIMER_PERIODIC | (vector & 0xff));
}

void lapic_timer_free_run(void) { timer_start(0xffffffffu, LVT_MASKED); }

void lapic_timer_stop(void) {
  lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
  lapic_write(LAPIC_TIMER_INITIAL, 0);
}

uint32_t lapic_timer_current(void) { return lapic_read(LAPIC_TIMER_CURRENT); }
