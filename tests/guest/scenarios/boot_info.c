// boot_info: what the loader handed over, printed and checked.
//   - prints the boot protocol, the command line and every e820 entry;
//   - RAM (type 1) must cover [0, 4 KiB) and the guest image at 1 MiB;
//   - hearth.expect_mem_mib=N: the sum of all RAM entries must lie in
//     [N MiB - 1 MiB, N MiB]. A VMM with N MiB of guest memory reports less
//     than N MiB as RAM: the hole from 0x9fc00 (or 0xa0000) to 1 MiB, and any
//     range it reserves for itself, are missing from the sum; 1 MiB of slack
//     covers the legacy hole (384 KiB, plus the EBDA/MP table page) and small
//     reservations. A sum above N MiB is always wrong;
//   - hearth.echo=WORD is printed back as "echo=WORD" (command line
//     round-trip; the harness compares it).
#include <stdint.h>

#include "arch/user.h"
#include "boot/boot_info.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "kernel/layout.h"
#include "kernel/test.h"
#include "scenarios/scenario.h"

#define MIB ((uint64_t)1024 * 1024)

extern const char __image_end[];  // guest.ld

static const char *type_name(uint32_t type) {
  switch (type) {
    case MEM_TYPE_RAM:
      return "RAM";
    case MEM_TYPE_RESERVED:
      return "reserved";
    case MEM_TYPE_ACPI:
      return "ACPI";
    case MEM_TYPE_NVS:
      return "NVS";
    default:
      return "other";
  }
}

// CPL3: formatting is native there; each printk enters the kernel once.
static uint64_t report(uint64_t unused) {
  (void)unused;
  printk("boot_info: protocol=%s rsdp=0x%lx\n", boot_protocol_name(boot_info.protocol),
         boot_info.rsdp);
  printk("boot_info: cmdline=\"%s\"%s\n", boot_info.cmdline,
         boot_info.cmdline_truncated ? " (truncated)" : "");
  for (uint32_t i = 0; i < boot_info.num_mem_ranges; i++) {
    const struct mem_range *r = &boot_info.mem[i];
    printk("boot_info: e820 [0x%016lx-0x%016lx] type %u %s\n", r->addr, r->addr + r->size - 1,
           r->type, type_name(r->type));
  }
  uint64_t total = boot_mem_ram_total();
  printk("boot_info: e820 entries=%u ram_total=%lu KiB\n", boot_info.num_mem_ranges, total / 1024);
  char word[64];
  if (cmdline_get("hearth.echo", word, sizeof(word))) printk("echo=%s\n", word);

  if (boot_info.num_mem_ranges == 0) test_fail("no e820 entries");
  if (boot_info.mem_truncated) test_fail("more than %u e820 entries", BOOT_MAX_MEM_RANGES);
  if (!boot_mem_is_ram(0, 0x1000)) test_fail("no RAM at 0");
  uint64_t image_size = (uint64_t)__image_end - IMAGE_BASE;
  if (!boot_mem_is_ram(IMAGE_BASE, image_size)) {
    test_fail("no RAM under the image [0x%x, 0x%lx)", IMAGE_BASE, (uint64_t)__image_end);
  }
  uint64_t expect_mib;
  if (cmdline_get_u64("hearth.expect_mem_mib", &expect_mib)) {
    uint64_t expect = expect_mib * MIB;
    if (total > expect || total + MIB < expect) {
      test_fail("ram_total %lu KiB not in [%lu, %lu] KiB (hearth.expect_mem_mib=%lu)", total / 1024,
                (expect - MIB) / 1024, expect / 1024, expect_mib);
    }
  }
  test_pass();
}

static void run(void) { user_call(report, 0); }
SCENARIO(boot_info, run);
