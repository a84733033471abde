// rng: two 64-byte reads from the first virtio-rng device (by interrupt);
// PASS if neither is all zeros and they differ.
#include <stdint.h>

#include "console/console.h"
#include "kernel/test.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/rng.h"

#define READ_BYTES 64

static bool all_zero(const uint8_t *p, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    if (p[i]) return false;
  }
  return true;
}

static uint64_t rng_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_RNG, 0);
  if (d == NULL) test_fail("no virtio rng device");
  static struct virtio_rng r;
  const char *err = rng_init(&r, d);
  if (err) test_fail("%s", err);
  static uint8_t a[READ_BYTES], b[READ_BYTES];
  if ((err = rng_read(&r, a, READ_BYTES, VIRTIO_IRQ)) != NULL) test_fail("read 1: %s", err);
  if ((err = rng_read(&r, b, READ_BYTES, VIRTIO_IRQ)) != NULL) test_fail("read 2: %s", err);
  printk("rng: %02x%02x%02x%02x... %02x%02x%02x%02x... (%u interrupts)\n", a[0], a[1], a[2], a[3],
         b[0], b[1], b[2], b[3], d->irq_count);
  if (all_zero(a, READ_BYTES) || all_zero(b, READ_BYTES)) test_fail("all-zero read");
  if (memcmp(a, b, READ_BYTES) == 0) test_fail("both reads returned the same bytes");
  test_pass();
}

static void rng(void) { virtio_scenario(rng_main); }
SCENARIO(rng, rng);
