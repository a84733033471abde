// Time for drivers and scenarios: the TSC, calibrated once against the LAPIC
// timer (KVM's LAPIC timer counts at 1 GHz with divide-by-1, intr/lapic.h),
// and sleeping in hlt until an interrupt counter moves or a deadline passes.
//
// time_init() measures for ~5 ms at CPL3 (LAPIC MMIO and rdtsc both work
// there) and registers a no-op handler for VEC_LAPIC_TIMER, which the waits
// use as their wake-up alarm. Everything else works at any CPL; a wait from
// CPL3 costs one kernel_call round trip per wake-up.
#ifndef GUEST_KERNEL_TIME_H_
#define GUEST_KERNEL_TIME_H_

#include <stdbool.h>
#include <stdint.h>

// CPL0 (not inside a user_call) or CPL3. Idempotent.
void time_init(void);
uint64_t time_tsc_per_ms(void);
// Microseconds / milliseconds since an arbitrary origin (the TSC's).
uint64_t time_us(void);
uint64_t time_ms(void);
// A TSC value |us| microseconds from now, and whether it has passed.
uint64_t time_deadline_us(uint64_t us);
bool time_passed(uint64_t deadline_tsc);
// Microseconds until deadline_tsc (0 if it passed).
uint64_t time_left_us(uint64_t deadline_tsc);
// Busy-waits (at CPL3 this is native and cheap).
void time_delay_us(uint64_t us);

// Sleeps in hlt with interrupts enabled until *counter != snapshot (an
// interrupt handler changed it) or the TSC passes deadline_tsc. Returns true
// if the counter moved. Any CPL; from CPL3 through kernel_call().
bool time_wait_counter(volatile uint32_t *counter, uint32_t snapshot, uint64_t deadline_tsc);

#endif  // GUEST_KERNEL_TIME_H_
