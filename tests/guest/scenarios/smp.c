// smp: every CPU the MP table lists checks in.
//   - the BSP starts the APs (smp/smp.c); each records the ID in its own
//     LAPIC ID register (CPUID returns host values on this host, so it is not
//     used for identity);
//   - each AP is then woken by IPI and runs a function at CPL3 that reads its
//     LAPIC ID again (user mode, per-CPU TSS and IPIs on every CPU);
//   - PASS if the CPUs that checked in equal the MP table's count, and
//     hearth.expect_cpus=N if given, the IDs are distinct and the BSP is in
//     the table.
#include <stdint.h>

#include "arch/cpu.h"
#include "arch/user.h"
#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "intr/lapic.h"
#include "kernel/test.h"
#include "scenarios/scenario.h"
#include "smp/smp.h"

static uint64_t read_id_at_cpl3(uint64_t unused) {
  (void)unused;
  return (uint64_t)current_cpl() << 32 | lapic_id();
}

static uint64_t ap_user_check(uint64_t unused) {
  (void)unused;
  return user_call(read_id_at_cpl3, 0);
}

static void check_ids(void) {
  bool bsp_listed = false;
  for (uint32_t i = 0; i < smp_mp_info.num_cpus; i++) {
    if (smp_mp_info.apic_ids[i] == cpus[0].apic_id) bsp_listed = true;
  }
  if (!bsp_listed) test_fail("BSP LAPIC ID %u not in the MP table", cpus[0].apic_id);
  for (uint32_t i = 0; i < smp_num_online; i++) {
    for (uint32_t j = i + 1; j < smp_num_online; j++) {
      if (cpus[i].apic_id == cpus[j].apic_id) {
        test_fail("cpus %u and %u share LAPIC ID %u", i, j, cpus[i].apic_id);
      }
    }
  }
}

static void run(void) {
  const char *err = smp_start_aps();
  if (smp_mp_info.error == NULL) {
    printk("smp: MP table at 0x%lx lists %u cpus, I/O APIC at 0x%lx\n", smp_mp_info.table_addr,
           smp_mp_info.num_cpus, smp_mp_info.ioapic_addr);
  }
  if (err) test_fail("%s", err);
  for (uint32_t i = 1; i < smp_num_online; i++) smp_run_on(i, ap_user_check, 0);
  for (uint32_t i = 0; i < smp_num_online; i++) {
    uint64_t r = i == 0 ? user_call(read_id_at_cpl3, 0) : smp_wait(i);
    printk("smp: cpu %u lapic_id %u (cpl3 read: %lu)\n", i, cpus[i].apic_id, r & 0xffffffff);
    if (r >> 32 != 3 || (uint32_t)r != cpus[i].apic_id) {
      test_fail("cpu %u: cpl3 check returned cpl %lu id %lu", i, r >> 32, r & 0xffffffff);
    }
  }
  printk("smp: %u cpus checked in\n", smp_num_online);
  if (smp_num_online != smp_mp_info.num_cpus) {
    test_fail("%u cpus checked in, MP table lists %u", smp_num_online, smp_mp_info.num_cpus);
  }
  uint64_t expect;
  if (cmdline_get_u64("hearth.expect_cpus", &expect) && expect != smp_num_online) {
    test_fail("%u cpus checked in, hearth.expect_cpus=%lu", smp_num_online, expect);
  }
  check_ids();
  test_pass();
}
SCENARIO(smp, run);
