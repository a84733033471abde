// virtio-blk scenarios (virtio/blk.h); the images follow the pattern in
// scenarios/virtio_common.h.
//
// blk:   every block device: capacity and GET_ID serial, printed as
//        "blk<i> id=<serial> capacity=<sectors> ro=<0|1>"; sector 0, the
//        last sector, 4 KiB (8 x 512-byte descriptors) and 64 KiB (16 x 4 KiB)
//        reads checked against the pattern; a read at capacity and a 2-sector
//        read from the last sector must fail (IOERR or UNSUPP). Writable
//        (no VIRTIO_BLK_F_RO): sector hearth.blk_write_sector (default 100) is
//        written with magic "HEARTH-WRITTEN  ", flushed (if _FLUSH), read back.
//        Read-only: a write must fail with IOERR, a read must still work.
//        Every completion is taken by interrupt.
// blk_flush_then_hang: the write + flush on device 0, then
//        "HEARTH-BLK-FLUSHED" and a spin at CPL3 forever (the host kills the
//        VMM and checks that the sector reached the file).
// irq:   one read whose completion is observed only through the device's
//        interrupt: the guest sleeps in hlt until the handler has seen
//        InterruptStatus bit 0, and only then looks at the used ring.
#include <stdint.h>

#include "arch/x86.h"
#include "console/console.h"
#include "kernel/heap.h"
#include "kernel/layout.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/blk.h"

#define KIB 1024u

static const char *status_name(int s) {
  switch (s) {
    case VIRTIO_BLK_S_OK:
      return "OK";
    case VIRTIO_BLK_S_IOERR:
      return "IOERR";
    case VIRTIO_BLK_S_UNSUPP:
      return "UNSUPP";
    case BLK_TIMEOUT:
      return "timeout";
    case BLK_QUEUE_FULL:
      return "queue full";
    default:
      return "bad status";
  }
}

static void start(struct virtio_blk *b, unsigned i, struct virtio_dev *d) {
  const char *err = blk_init(b, d);
  if (err) test_fail("blk%u: %s", i, err);
}

// A read of n sectors in |segs| descriptors, checked against the pattern.
static void read_check(struct virtio_blk *b, unsigned i, uint8_t *buf, uint64_t sector, uint32_t n,
                       unsigned segs) {
  memset(buf, 0, n * BLK_SECTOR_SIZE);
  int s = blk_io(b, VIRTIO_BLK_T_IN, sector, buf, n * BLK_SECTOR_SIZE, segs, VIRTIO_IRQ);
  if (s != VIRTIO_BLK_S_OK) {
    test_fail("blk%u: read of %u sectors at %lu: %s (%d)", i, n, sector, status_name(s), s);
  }
  const char *why = blk_pattern_check(buf, sector, n, blk_write_sector());
  if (why) test_fail("blk%u: read at %lu (%u descriptors): %s", i, sector, segs, why);
}

static void expect_error(struct virtio_blk *b, unsigned i, uint8_t *buf, uint64_t sector,
                         uint32_t n) {
  int s = blk_io(b, VIRTIO_BLK_T_IN, sector, buf, n * BLK_SECTOR_SIZE, 1, VIRTIO_IRQ);
  printk("blk%u: read of %u sector(s) at %lu: %s\n", i, n, sector, status_name(s));
  if (s != VIRTIO_BLK_S_IOERR && s != VIRTIO_BLK_S_UNSUPP) {
    test_fail("blk%u: read of %u sectors at %lu (capacity %lu) gave %s, want IOERR or UNSUPP", i, n,
              sector, b->capacity, status_name(s));
  }
}

// Write + flush + read back of hearth.blk_write_sector.
static void write_flush_verify(struct virtio_blk *b, unsigned i, uint8_t *buf, bool verify) {
  uint64_t sector = blk_write_sector();
  if (sector >= b->capacity) test_fail("blk%u: write sector %lu beyond capacity", i, sector);
  blk_pattern_fill(buf, sector, BLK_MAGIC_WRITTEN);
  int s = blk_io(b, VIRTIO_BLK_T_OUT, sector, buf, BLK_SECTOR_SIZE, 1, VIRTIO_IRQ);
  if (s != VIRTIO_BLK_S_OK) test_fail("blk%u: write at %lu: %s", i, sector, status_name(s));
  if (b->has_flush) {
    s = blk_io(b, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0, VIRTIO_IRQ);
    if (s != VIRTIO_BLK_S_OK) test_fail("blk%u: flush: %s", i, status_name(s));
  }
  printk("blk%u: wrote sector %lu%s\n", i, sector, b->has_flush ? " and flushed" : " (no FLUSH)");
  if (!verify) return;
  memset(buf, 0, BLK_SECTOR_SIZE);
  s = blk_io(b, VIRTIO_BLK_T_IN, sector, buf, BLK_SECTOR_SIZE, 1, VIRTIO_IRQ);
  if (s != VIRTIO_BLK_S_OK) test_fail("blk%u: read back at %lu: %s", i, sector, status_name(s));
  if (memcmp(buf, BLK_MAGIC_WRITTEN, 16) != 0) {
    test_fail("blk%u: sector %lu not written", i, sector);
  }
  const char *why = blk_pattern_check(buf, sector, 1, sector);
  if (why) test_fail("blk%u: read back: %s", i, why);
}

static void check_device(unsigned i, struct virtio_dev *d, uint8_t *buf) {
  static struct virtio_blk b;
  start(&b, i, d);
  char id[VIRTIO_BLK_ID_BYTES + 1];
  int s = blk_get_id(&b, id, VIRTIO_IRQ);
  if (s != VIRTIO_BLK_S_OK) test_fail("blk%u: GET_ID: %s", i, status_name(s));
  printk("blk%u id=%s capacity=%lu ro=%u\n", i, id, b.capacity, b.read_only);
  printk("blk%u: features 0x%lx (offered 0x%lx) seg_max %u size_max %u queue %u\n", i, d->features,
         d->offered, b.seg_max, b.size_max, b.vq->num);
  uint64_t need = 16 + 128;
  if (b.capacity < need || b.capacity <= blk_write_sector()) {
    test_fail("blk%u: capacity %lu too small for the checks (need > %lu and > %lu)", i, b.capacity,
              need, blk_write_sector());
  }
  read_check(&b, i, buf, 0, 1, 1);
  read_check(&b, i, buf, b.capacity - 1, 1, 1);
  read_check(&b, i, buf, 8, 4 * KIB / BLK_SECTOR_SIZE, 8);
  unsigned segs = b.seg_max && b.seg_max < 16 ? b.seg_max : 16;
  read_check(&b, i, buf, 16, 64 * KIB / BLK_SECTOR_SIZE, segs);
  expect_error(&b, i, buf, b.capacity, 1);
  expect_error(&b, i, buf, b.capacity - 1, 2);
  if (!b.read_only) {
    write_flush_verify(&b, i, buf, true);
  } else {
    blk_pattern_fill(buf, 1, BLK_MAGIC_WRITTEN);
    s = blk_io(&b, VIRTIO_BLK_T_OUT, 1, buf, BLK_SECTOR_SIZE, 1, VIRTIO_IRQ);
    printk("blk%u: write to the read-only device: %s\n", i, status_name(s));
    if (s != VIRTIO_BLK_S_IOERR) {
      test_fail("blk%u: write to read-only device: %s, want IOERR", i, status_name(s));
    }
    read_check(&b, i, buf, 1, 1, 1);
  }
  printk("blk%u: %u requests, %u interrupts, %u notifies\n", i, b.completed, d->irq_count,
         b.vq->notifies);
}

static uint64_t blk_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  uint8_t *buf = heap_alloc(64 * KIB, 4096);
  unsigned n = 0;
  for (struct virtio_dev *d; (d = virtio_find(VIRTIO_ID_BLOCK, n)) != NULL; n++) {
    check_device(n, d, buf);
  }
  if (n == 0) test_fail("no virtio block device");
  test_pass();
}

static void blk(void) { virtio_scenario(blk_main); }
SCENARIO(blk, blk);

static uint64_t flush_then_hang(uint64_t unused) {
  (void)unused;
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
  if (d == NULL) test_fail("no virtio block device");
  static struct virtio_blk b;
  start(&b, 0, d);
  if (b.read_only) test_fail("blk0 is read-only");
  write_flush_verify(&b, 0, heap_alloc(BLK_SECTOR_SIZE, 512), false);
  printk("HEARTH-BLK-FLUSHED\n");
  for (;;) cpu_relax();  // CPL3: native; the host kills the VMM now
}

static void blk_flush_then_hang(void) { virtio_scenario(flush_then_hang); }
SCENARIO(blk_flush_then_hang, blk_flush_then_hang);

static uint64_t irq_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
  if (d == NULL) test_fail("no virtio block device");
  static struct virtio_blk b;
  start(&b, 0, d);
  if (!d->irq_routed) test_fail("GSI %u cannot be routed", d->gsi);
  uint8_t *buf = heap_alloc(BLK_SECTOR_SIZE, 512);
  virtq_set_irq(b.vq, true);
  uint16_t used_before = b.vq->used->idx;
  d->isr_seen = 0;
  uint32_t irqs_before = d->irq_count;
  struct blk_req *r = blk_submit(&b, VIRTIO_BLK_T_IN, 0, buf, BLK_SECTOR_SIZE, 1);
  if (r == NULL) test_fail("submit failed");
  uint64_t t0 = time_us();
  virtq_kick(b.vq);
  // Sleep until the handler saw the used-buffer bit; the used ring is not
  // looked at before that.
  uint64_t deadline = time_deadline_us(virtio_timeout_us());
  while (!(d->isr_seen & VIRTIO_ISR_USED)) {
    uint32_t snapshot = d->irq_count;
    if (d->isr_seen & VIRTIO_ISR_USED) break;
    if (!time_wait_counter(&d->irq_count, snapshot, deadline)) {
      test_fail("no interrupt with InterruptStatus bit 0 within %lu ms",
                virtio_timeout_us() / 1000);
    }
  }
  uint64_t t1 = time_us();
  uint16_t used_after = *(volatile uint16_t *)&b.vq->used->idx;
  printk(
      "irq: gsi %u vector 0x%x: %u interrupt(s), InterruptStatus 0x%x, used idx %u -> %u, "
      "%lu us\n",
      d->gsi, VEC_IRQ_BASE + d->gsi, d->irq_count - irqs_before, d->isr_seen, used_before,
      used_after, t1 - t0);
  if (used_after == used_before) test_fail("interrupt came but the used index did not move");
  if (blk_next_done(&b) != r) test_fail("completion is not the request");
  if (r->status != VIRTIO_BLK_S_OK) test_fail("read status %u", r->status);
  const char *why = blk_pattern_check(buf, 0, 1, blk_write_sector());
  if (why) test_fail("%s", why);
  test_pass();
}

static void irq(void) { virtio_scenario(irq_main); }
SCENARIO(irq, irq);
