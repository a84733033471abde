// Benchmarks (not tests): data paths at CPL3 (native on this host), polling
// the used rings with the device's GSI masked, so no guest CPL0 code runs
// between the markers. The host timestamps the marker lines:
//   HEARTH-BENCH-START                 before the first request
//   HEARTH-BENCH-END bytes=<n>         (blk_bench) after the last completion
//   HEARTH-BENCH-END frames=<n>        (net_bench)
// then PASS.
//
// blk_bench: sequential reads or writes on the first block device (the first
//   writable one for writes), wrapping around at the end of the disk.
//     hearth.bench_op=read|write     (default read)
//     hearth.bench_size=N            bytes per request, a multiple of 512
//                                    up to 1 MiB (default 4096; 65536 too)
//     hearth.bench_bytes=N           total (default 64 MiB)
//     hearth.bench_depth=N           requests in flight (default 16)
// net_bench: transmit only, frames to ff:ff:ff:ff:ff:ff, ethertype 0x88b5,
//   tx buffers reclaimed by polling.
//     hearth.bench_frames=N          (default 100000)
//     hearth.bench_frame_size=N      Ethernet frame bytes, 60..1514 (default 64)
#include <stdint.h>

#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "intr/ioapic.h"
#include "kernel/heap.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/blk.h"
#include "virtio/net.h"

#define MIB (1024ull * 1024)

static uint64_t key(const char *name, uint64_t dflt) {
  uint64_t v = dflt;
  cmdline_get_u64(name, &v);
  return v;
}

// Polling only: no interrupt may cost CPL0 time during the run.
static void quiet(struct virtio_dev *d) {
  for (unsigned q = 0; q < d->num_queues; q++) virtq_set_irq(&d->vq[q], false);
  if (d->irq_routed) ioapic_mask(d->gsi);
}

static struct virtio_dev *bench_blk_device(bool write, struct virtio_blk *b) {
  struct virtio_dev *d;
  for (unsigned i = 0; (d = virtio_find(VIRTIO_ID_BLOCK, i)) != NULL; i++) {
    const char *err = blk_init(b, d);
    if (err) test_fail("blk%u: %s", i, err);
    if (!write || !b->read_only) return d;
  }
  test_fail(write ? "no writable virtio block device" : "no virtio block device");
}

static uint64_t blk_bench_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  char op[8] = "read";
  cmdline_get("hearth.bench_op", op, sizeof(op));
  bool write = strcmp(op, "write") == 0;
  if (!write && strcmp(op, "read") != 0) test_fail("hearth.bench_op=%s: read or write", op);
  uint64_t size = key("hearth.bench_size", 4096), total = key("hearth.bench_bytes", 64 * MIB);
  uint64_t depth = key("hearth.bench_depth", 16);
  if (size == 0 || size % BLK_SECTOR_SIZE || size > MIB) test_fail("bad hearth.bench_size");
  if (depth == 0 || depth * 3 > BLK_QUEUE_SIZE) test_fail("bad hearth.bench_depth");
  static struct virtio_blk b;
  struct virtio_dev *d = bench_blk_device(write, &b);
  if (b.size_max && size > b.size_max) test_fail("bench_size > the device's size_max");
  uint64_t per_req = size / BLK_SECTOR_SIZE, span = b.capacity - b.capacity % per_req;
  if (span == 0) test_fail("disk smaller than one request");
  uint64_t requests = (total + size - 1) / size;
  uint8_t *bufs = heap_alloc(depth * size, 4096);
  memset(bufs, 0x5a, depth * size);
  quiet(d);
  uint32_t type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  uint64_t submitted = 0, completed = 0, pos = 0;
  printk("HEARTH-BENCH-START\n");
  uint64_t t0 = rdtsc();
  while (completed < requests) {
    bool added = false;
    for (; submitted < requests && submitted - completed < depth; submitted++) {
      // With < depth requests in flight, the first free slot is < depth.
      int slot = blk_free_slot(&b);
      uint8_t *buf = bufs + (uint64_t)slot * size;
      if (slot < 0 || blk_submit(&b, type, pos, buf, (uint32_t)size, 1) != &b.reqs[slot]) break;
      pos = (pos + per_req) % span;
      added = true;
    }
    if (added) virtq_kick(b.vq);
    struct blk_req *r;
    while ((r = blk_next_done(&b)) != NULL) {
      if (r->status != VIRTIO_BLK_S_OK) test_fail("request failed: status %u", r->status);
      blk_release(&b, r);
      completed++;
    }
  }
  uint64_t cycles = rdtsc() - t0;
  printk("HEARTH-BENCH-END bytes=%lu\n", requests * size);
  uint64_t us = cycles * 1000 / time_tsc_per_ms();
  printk("blk_bench: %s size=%lu depth=%lu requests=%lu notifies=%u guest_us=%lu (%lu MiB/s)\n", op,
         size, depth, requests, b.vq->notifies, us,
         us ? (uint64_t)(requests * size / us * 1000000 / MIB) : 0);
  test_pass();
}

static void blk_bench(void) { virtio_scenario(blk_bench_main); }
SCENARIO(blk_bench, blk_bench);

static uint64_t net_bench_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  uint64_t frames = key("hearth.bench_frames", 100000), size = key("hearth.bench_frame_size", 64);
  if (size < 60 || size > ETH_FRAME_MAX) test_fail("hearth.bench_frame_size: 60..1514");
  struct virtio_dev *d = virtio_find(VIRTIO_ID_NET, 0);
  if (d == NULL) test_fail("no virtio net device");
  static struct virtio_net n;
  const char *err = net_init(&n, d, NET_QUEUE_SIZE);
  if (err) test_fail("%s", err);
  static uint8_t frame[ETH_FRAME_MAX];
  memset(frame, 0xff, ETH_ALEN);
  memcpy(frame + ETH_ALEN, n.mac, ETH_ALEN);
  frame[12] = 0x88;
  frame[13] = 0xb5;
  memcpy(frame + ETH_HLEN, "HEARTH-NET-BENCH", 16);
  quiet(d);
  uint64_t sent = 0;
  printk("HEARTH-BENCH-START\n");
  uint64_t t0 = rdtsc();
  while (n.tx_completed < frames) {
    bool added = false;
    while (sent < frames && net_send(&n, frame, (uint32_t)size, false)) {
      sent++;
      added = true;
    }
    if (added) virtq_kick(n.tx);
    net_tx_reclaim(&n);
  }
  uint64_t cycles = rdtsc() - t0;
  printk("HEARTH-BENCH-END frames=%lu\n", frames);
  uint64_t us = cycles * 1000 / time_tsc_per_ms();
  printk("net_bench: frame_size=%lu frames=%lu notifies=%u guest_us=%lu (%lu frames/s)\n", size,
         frames, n.tx->notifies, us, us ? frames * 1000000 / us : 0);
  test_pass();
}

static void net_bench(void) { virtio_scenario(net_bench_main); }
SCENARIO(net_bench, net_bench);
