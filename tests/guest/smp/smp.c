#include "smp/smp.h"

#include "arch/cpu.h"
#include "arch/x86.h"
#include "console/console.h"
#include "intr/idt.h"
#include "intr/lapic.h"
#include "kernel/layout.h"
#include "lib/string.h"

struct mp_info smp_mp_info;
uint32_t smp_num_online = 1;

// Handed to the AP being started (read in smp/trampoline.S and ap_main).
uint64_t ap_boot_rsp;
static volatile uint32_t ap_boot_index;

// Per-AP mailbox for smp_run_on().
struct ap_work {
  volatile user_fn fn;
  volatile uint64_t arg;
  volatile uint64_t result;
  volatile uint32_t pending;
};
static struct ap_work ap_work[MAX_CPUS];

extern const char trampoline_start[], trampoline_end[];

// An AP waits this long (in TSC cycles; ~1 s at 2 GHz) to check in. CPL0 is
// emulated on this host, so start-up takes milliseconds, not microseconds.
#define AP_START_TIMEOUT_TSC 2000000000ull

static void ipi_wake(struct trap_frame *frame, void *ctx) {
  (void)frame;
  (void)ctx;  // waking from hlt is all it is for
}

static void ap_idle(uint32_t index) {
  struct ap_work *w = &ap_work[index];
  for (;;) {
    cli();
    while (!__atomic_load_n(&w->pending, __ATOMIC_ACQUIRE)) {
      sti_hlt();  // an IPI that arrived after cli is taken right after sti
      cli();
    }
    w->result = w->fn(w->arg);
    __atomic_store_n(&w->pending, 0, __ATOMIC_RELEASE);
  }
}

void ap_main(void) __attribute__((noreturn));
void ap_main(void) {
  uint32_t index = ap_boot_index;
  cpu_init(index);
  lapic_enable();
  cpus[index].apic_id = lapic_id();
  __atomic_store_n(&cpus[index].online, true, __ATOMIC_RELEASE);
  ap_idle(index);
  __builtin_unreachable();
}

static uint64_t find_mp_table(uint64_t info) {
  mptable_find((struct mp_info *)info);
  return 0;
}

static const char *start_ap(uint32_t index, uint32_t apic_id) {
  ap_boot_index = index;
  ap_boot_rsp = stack_top(cpu_stacks[index].kernel);
  // INIT-SIPI-SIPI (SDM Vol. 3A 9.4.4.1). KVM needs none of the historical
  // delays; a second SIPI to a CPU that already started is ignored.
  if (!lapic_send_init(apic_id)) return "INIT IPI not delivered";
  if (!lapic_send_startup(apic_id, TRAMPOLINE_BASE >> 12)) return "SIPI not delivered";
  if (!lapic_send_startup(apic_id, TRAMPOLINE_BASE >> 12)) return "SIPI not delivered";
  uint64_t start = rdtsc();
  while (!__atomic_load_n(&cpus[index].online, __ATOMIC_ACQUIRE)) {
    if (rdtsc() - start > AP_START_TIMEOUT_TSC) return "AP did not check in";
    cpu_relax();
  }
  return NULL;
}

const char *smp_start_aps(void) {
  user_call(find_mp_table, (uint64_t)&smp_mp_info);  // a 64 KiB scan: CPL3
  if (smp_mp_info.error) return smp_mp_info.error;
  irq_register(VEC_IPI_WAKE, ipi_wake, NULL);
  memcpy((void *)TRAMPOLINE_BASE, trampoline_start, (size_t)(trampoline_end - trampoline_start));
  uint32_t bsp = cpus[0].apic_id;
  for (uint32_t i = 0; i < smp_mp_info.num_cpus; i++) {
    uint32_t apic_id = smp_mp_info.apic_ids[i];
    if (apic_id == bsp) continue;
    if (smp_num_online == MAX_CPUS) return "more CPUs than MAX_CPUS";
    const char *err = start_ap(smp_num_online, apic_id);
    if (err) {
      printk("hearth-guest: cpu with LAPIC ID %u: %s\n", apic_id, err);
      return err;
    }
    smp_num_online++;
  }
  return NULL;
}

void smp_run_on(uint32_t index, user_fn fn, uint64_t arg) {
  struct ap_work *w = &ap_work[index];
  w->fn = fn;
  w->arg = arg;
  __atomic_store_n(&w->pending, 1, __ATOMIC_RELEASE);
  lapic_send_ipi(cpus[index].apic_id, VEC_IPI_WAKE);
}

uint64_t smp_wait(uint32_t index) {
  while (__atomic_load_n(&ap_work[index].pending, __ATOMIC_ACQUIRE)) cpu_relax();
  return ap_work[index].result;
}
