// counter: a guest whose state lives in RAM and in a block device, for the
// snapshot tests. It prints "counter: boot" once, then every hearth.tick_ms
// (default 100) increments a counter in RAM and, if there is a writable
// virtio block device, writes the count into sector (n % 64) + 1000,
// reads it back and checks it:
//   counter: n=<n> blk=ok        (or "counter: n=<n>" without a disk)
// A restored guest goes on from the same n, without a second "boot" line.
// With hearth.queue_ms=M the write is queued, "counter: n=<n> queued" is
// printed and only after M ms is the device notified: a snapshot taken
// meanwhile holds a request the device has not seen yet, which the
// restored device must still complete.
// Serial input lines come back as "counter: echo <line>"; Ctrl-Alt-Del
// ends the run with PASS and a reset (as in the idle scenario).
// For bench/snapshot, so that guest memory is not trivially empty:
// hearth.touch_mib=N makes the guest write a non-zero pattern over N MiB of
// heap once, after the boot line, at CPL3 ("counter: touched N MiB in T ms");
// hearth.retouch_kib=K then rewrites the next K KiB of that area (round
// robin) every tick, so that a Diff snapshot has a known amount of dirty
// memory. (KiB, not MiB: at a 10 ms tick one MiB a tick would dirty 50 MiB
// in half a second.) Neither is set by the snapshot tests.
#include <stdint.h>

#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "console/serial.h"
#include "kernel/heap.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/blk.h"

#define I8042_DATA 0x60
#define I8042_STATUS 0x64
#define FIRST_SECTOR 1000u
#define SECTORS 64u

static const uint8_t kCtrlAltDel[] = {0x14, 0x11, 0xe0, 0x71};
static volatile uint32_t never;

static struct virtio_blk disk;
static uint8_t out[BLK_SECTOR_SIZE] __attribute__((aligned(16)));
static uint8_t in[BLK_SECTOR_SIZE] __attribute__((aligned(16)));

static void sleep_ms(uint64_t ms) { time_wait_counter(&never, 0, time_deadline_us(ms * 1000)); }

static void fill(uint8_t *buf, uint64_t n) {
  memset(buf, 0, BLK_SECTOR_SIZE);
  memcpy(buf, "HEARTH-COUNT    ", 16);
  memcpy(buf + 16, &n, sizeof(n));
  for (uint32_t j = 24; j < BLK_SECTOR_SIZE; j++) buf[j] = (uint8_t)(n * 7 + j);
}

// The hearth.touch_mib area: every 8-byte word gets a value that is never
// zero and differs from page to page and from pass to pass.
static uint64_t *touched;
static uint64_t touched_words;
static uint64_t retouch_at;  // next word a retouch starts at
static uint64_t touch_pass;

static void touch_words(uint64_t first, uint64_t count) {
  uint64_t pattern = 0x9e3779b97f4a7c15ull * (touch_pass + 1);
  for (uint64_t i = first; i < first + count; i++) touched[i] = (pattern ^ i) | 1;
}

static void touch_init(uint64_t mib) {
  if (mib == 0) return;
  if (mib > heap_free_bytes() >> 20) {
    test_fail("counter: hearth.touch_mib=%lu but the heap has %lu MiB", mib,
              heap_free_bytes() >> 20);
  }
  uint64_t bytes = mib << 20;
  uint64_t start = time_us();
  touched = heap_alloc(bytes, 4096);
  touched_words = bytes / sizeof(uint64_t);
  touch_words(0, touched_words);
  printk("counter: touched %lu MiB in %lu ms\n", mib, (time_us() - start) / 1000);
}

static void retouch(uint64_t kib) {
  if (touched_words == 0 || kib == 0) return;
  const uint64_t words_per_kib = 1024 / sizeof(uint64_t);
  uint64_t words = kib > touched_words / words_per_kib ? touched_words : kib * words_per_kib;
  if (retouch_at + words > touched_words) {
    retouch_at = 0;
    touch_pass++;
  }
  touch_words(retouch_at, words);
  retouch_at += words;
}

static void poll_input(char *line, unsigned *length, uint8_t *recent) {
  // QEMU's microvm has no i8042: the port reads 0xff (output full, forever).
  uint8_t status;
  while (((status = inb(I8042_STATUS)) & 1) != 0 && status != 0xff) {
    for (unsigned i = 0; i + 1 < sizeof(kCtrlAltDel); i++) recent[i] = recent[i + 1];
    recent[sizeof(kCtrlAltDel) - 1] = inb(I8042_DATA);
    if (memcmp(recent, kCtrlAltDel, sizeof(kCtrlAltDel)) == 0) {
      printk("counter: ctrl-alt-del\n");
      test_pass();
    }
  }
  int c;
  while ((c = serial_try_getc()) >= 0) {
    if (c == '\r' || c == '\n') {
      if (*length > 0) {
        line[*length] = 0;
        printk("counter: echo %s\n", line);
      }
      *length = 0;
    } else if (*length + 1 < 128 && c >= 0x20 && c < 0x7f) {
      line[(*length)++] = (char)c;
    }
  }
}

static uint64_t counter_main(uint64_t unused) {
  (void)unused;
  uint64_t tick_ms = 100, queue_ms = 0, touch_mib = 0, retouch_kib = 0;
  cmdline_get_u64("hearth.tick_ms", &tick_ms);
  cmdline_get_u64("hearth.queue_ms", &queue_ms);
  cmdline_get_u64("hearth.touch_mib", &touch_mib);
  cmdline_get_u64("hearth.retouch_kib", &retouch_kib);
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
  bool have_disk = false;
  if (d != NULL) {
    const char *err = blk_init(&disk, d);
    if (err) test_fail("counter: disk: %s", err);
    have_disk = !disk.read_only && disk.capacity >= FIRST_SECTOR + SECTORS;
    // One completed request first: the device activates on the VMM's
    // event loop some time after DRIVER_OK, and processes whatever is
    // available then, kicked or not (a queued request must come later).
    if (have_disk && blk_io(&disk, VIRTIO_BLK_T_IN, FIRST_SECTOR, in, BLK_SECTOR_SIZE, 1,
                            VIRTIO_IRQ) != VIRTIO_BLK_S_OK) {
      test_fail("counter: disk: first read failed");
    }
  }
  printk("counter: boot disk=%u\n", have_disk);
  touch_init(touch_mib);
  static volatile uint64_t n;  // the state a restore must keep
  char line[128];
  unsigned length = 0;
  uint8_t recent[sizeof(kCtrlAltDel)] = {0};
  for (;;) {
    n = n + 1;
    if (!have_disk) {
      printk("counter: n=%lu\n", n);
    } else {
      uint64_t sector = FIRST_SECTOR + n % SECTORS;
      fill(out, n);
      // A device that just finished may look at the ring a little longer
      // for more work (block.cc polls 50 us); a queued request must come
      // after that, so that it really waits for the kick.
      if (queue_ms > 0) sleep_ms(2);
      struct blk_req *r = blk_submit(&disk, VIRTIO_BLK_T_OUT, sector, out, BLK_SECTOR_SIZE, 1);
      if (r == NULL) test_fail("counter: queue full");
      if (queue_ms > 0) {
        printk("counter: n=%lu queued\n", n);
        sleep_ms(queue_ms);
      }
      int s = blk_kick_and_wait(&disk, r, VIRTIO_IRQ);
      if (s != VIRTIO_BLK_S_OK) test_fail("counter: n=%lu write: status %d", n, s);
      memset(in, 0, sizeof(in));
      s = blk_io(&disk, VIRTIO_BLK_T_IN, sector, in, BLK_SECTOR_SIZE, 1, VIRTIO_IRQ);
      if (s != VIRTIO_BLK_S_OK) test_fail("counter: n=%lu read: status %d", n, s);
      if (memcmp(in, out, BLK_SECTOR_SIZE) != 0) test_fail("counter: n=%lu read back differs", n);
      printk("counter: n=%lu blk=ok\n", n);
    }
    retouch(retouch_kib);
    uint64_t deadline = time_deadline_us(tick_ms * 1000);
    while (!time_passed(deadline)) {
      poll_input(line, &length, recent);
      uint64_t left = time_left_us(deadline);
      time_wait_counter(&never, 0, time_deadline_us(left < 50000 ? left : 50000));
    }
  }
  return 0;
}

static void counter(void) { virtio_scenario(counter_main); }
SCENARIO(counter, counter);
