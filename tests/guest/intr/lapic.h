// Local APIC in xAPIC mode, MMIO at LAPIC_BASE (0xfee00000), as the VMM
// leaves it at reset. SDM Vol. 3A chapter 11. All functions work at CPL0 and
// CPL3 (the page is mapped with U/S), except where noted.
#ifndef GUEST_INTR_LAPIC_H_
#define GUEST_INTR_LAPIC_H_

#include <stdbool.h>
#include <stdint.h>

uint32_t lapic_id(void);
uint32_t lapic_version(void);
// Software-enables the LAPIC (spurious vector VEC_SPURIOUS), TPR 0.
void lapic_enable(void);
void lapic_eoi(void);

// Inter-processor interrupts. Each waits (bounded) for the previous IPI to be
// delivered first; they return false if delivery never completed.
bool lapic_send_init(uint32_t apic_id);
bool lapic_send_startup(uint32_t apic_id, uint32_t page);  // SIPI, vector = page
bool lapic_send_ipi(uint32_t apic_id, uint32_t vector);

// LAPIC timer. KVM's LAPIC timer counts at 1 GHz with divide-by-1; the count
// is in timer ticks after the divider (here: divide by 1).
void lapic_timer_oneshot(uint32_t count, uint32_t vector);
void lapic_timer_periodic(uint32_t count, uint32_t vector);
// Starts a one-shot count from 0xffffffff with the interrupt masked: a
// 4.29 s stopwatch read through lapic_timer_current() (kernel/time.c).
void lapic_timer_free_run(void);
void lapic_timer_stop(void);
uint32_t lapic_timer_current(void);

#endif  // GUEST_INTR_LAPIC_H_
