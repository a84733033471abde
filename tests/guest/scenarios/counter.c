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
#include <stdint.h>

#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "console/serial.h"
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

static void poll_input(char *line, unsigned *length, uint8_t *recent) {
  while ((inb(I8042_STATUS) & 1) != 0) {
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
  uint64_t tick_ms = 100, queue_ms = 0;
  cmdline_get_u64("hearth.tick_ms", &tick_ms);
  cmdline_get_u64("hearth.queue_ms", &queue_ms);
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
  bool have_disk = false;
  if (d != NULL) {
    const char *err = blk_init(&disk, d);
    if (err) test_fail("counter: disk: %s", err);
    have_disk = !disk.read_only && disk.capacity >= FIRST_SECTOR + SECTORS;
  }
  printk("counter: boot disk=%u\n", have_disk);
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
