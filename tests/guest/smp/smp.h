// Starting the application processors and giving them work.
//
// smp_start_aps() reads the MP table, copies the real-mode trampoline to
// TRAMPOLINE_BASE and starts every other enabled CPU with INIT-SIPI-SIPI,
// one at a time. Each AP sets itself up (cpu_init, LAPIC), records its LAPIC
// ID in cpus[i].apic_id, sets cpus[i].online and then sleeps in hlt until
// smp_run_on() sends it a function (by IPI, vector VEC_IPI_WAKE).
#ifndef GUEST_SMP_SMP_H_
#define GUEST_SMP_SMP_H_

#include <stdint.h>

#include "arch/user.h"
#include "smp/mptable.h"

extern struct mp_info smp_mp_info;  // valid after smp_start_aps()
extern uint32_t smp_num_online;     // CPUs that checked in, BSP included

// CPL0, BSP. Returns NULL on success, else why not all CPUs came up (the
// MP table is missing, an AP did not check in within its time limit).
const char *smp_start_aps(void);

// Runs fn(arg) at CPL0 on online AP |index| (which may user_call()), without
// waiting. CPL0 or CPL3.
void smp_run_on(uint32_t index, user_fn fn, uint64_t arg);
// Waits for the function given to AP |index| to finish and returns its
// result. CPL0 or CPL3 (spinning is cheaper at CPL3).
uint64_t smp_wait(uint32_t index);

#endif  // GUEST_SMP_SMP_H_
