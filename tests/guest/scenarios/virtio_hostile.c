// hostile: malformed requests and misbehaving driver sequences against a
// writable virtio-blk device (and a read-only one and the rng device when
// present). After every attack a well-formed request must work; each
// attack ends with the line "HEARTH-HOSTILE <attack> ok" (or "... skipped
// (<why>)" when the devices given cannot express it).
//
// A malformed chain may be completed (used length 0, or status IOERR /
// UNSUPP) or never completed; no completion within 200 ms is accepted, and
// so is DEVICE_NEEDS_RESET in Status: in both cases the guest resets and
// re-initialises the device before the next good request. Completing a
// malformed chain with status OK and a non-zero length is a failure.
//
// hearth.hostile_tolerate=<attack>[,<attack>...] turns a failed check of
// the named attacks into a printed "tolerated" line (the device is then
// reset before the good request): for reference devices that differ from
// Hearth's rules (QEMU; see qemu_virtio_test.sh).
//
//   desc_outside_ram      data buffer at 0xdead00000000
//   desc_addr_wrap        data buffer at 2^64 - 4 KiB, 8 KiB long
//   chain_loop            descriptor a -> b -> a (a write request)
//   next_out_of_range     next = queue size + 7
//   readable_after_writable  hdr (R), data (W), 16 bytes (R), status (W)
//   indirect_bad_len      indirect table of 47 bytes   (VIRTIO_F_INDIRECT_DESC)
//   indirect_outside_ram  indirect table at 0xdead00000000
//   write_read_only       a write to the read-only drive must give IOERR
//   config_oob            config reads from offset 128 to the window's end
//                         read hearth.hostile_oob_read (default 0); writes
//                         there change nothing
//   notify_before_driver_ok  a request + QueueNotify before DRIVER_OK: the
//                         device must not use it (100 ms)
//   rings_outside_ram     rings at 0xdead0000xxxx, then DRIVER_OK: Status
//                         must get DEVICE_NEEDS_RESET (within 100 ms)
//   avail_idx_jump        avail->idx moved queue size + 10 ahead: the device
//                         must not complete anything (100 ms)
//   rng_desc_outside_ram  rng buffer at 0xdead00000000
//   rng_readable_buffer   rng buffer without VRING_DESC_F_WRITE: must stay
//                         untouched
#include <stdarg.h>
#include <stdint.h>

#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "kernel/heap.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/format.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/blk.h"
#include "virtio/rng.h"

#define OUTSIDE_RAM 0xdead00000000ull
#define WRAP_ADDR 0xfffffffffffff000ull
#define BAD_CHAIN_WAIT_US 200000
#define QUIET_WAIT_US 100000
#define OOB_FIRST 128  // beyond every virtio-blk config field (96 bytes in 1.2)

// A request the attacks describe by hand.
struct raw_req {
  struct virtio_blk_outhdr hdr;
  volatile uint8_t status;
  uint8_t pad[15];
  uint8_t data[BLK_SECTOR_SIZE];
  uint8_t extra[16];
  struct vring_desc table[4];  // for the indirect attacks
};

struct hostile {
  struct virtio_dev *d;
  struct virtio_blk blk;
  struct raw_req *r;
  uint8_t *buf;
};

// A check of |attack| failed: the end of the test, unless tolerated.
static void violation(const char *attack, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void violation(const char *attack, const char *fmt, ...) {
  char why[128];
  va_list ap;
  va_start(ap, fmt);
  vformat(why, sizeof(why), fmt, ap);
  va_end(ap);
  if (!cmdline_has_word("hearth.hostile_tolerate", attack)) test_fail("%s: %s", attack, why);
  printk("hostile: %s: tolerated (hearth.hostile_tolerate): %s\n", attack, why);
}

static struct virtq *vq_of(struct hostile *h) { return h->blk.vq; }

static void restart(struct hostile *h, const char *attack) {
  const char *err = blk_init(&h->blk, h->d);
  if (err) test_fail("%s: re-initialising the device: %s", attack, err);
}

static void check_read(struct hostile *h, const char *attack) {
  memset(h->buf, 0, BLK_SECTOR_SIZE);
  int s = blk_io(&h->blk, VIRTIO_BLK_T_IN, 0, h->buf, BLK_SECTOR_SIZE, 1, VIRTIO_POLL);
  if (s != VIRTIO_BLK_S_OK) test_fail("%s: good read afterwards: status %d", attack, s);
  const char *why = blk_pattern_check(h->buf, 0, 1, blk_write_sector());
  if (why) test_fail("%s: good read afterwards: %s", attack, why);
}

static void good_read(struct hostile *h, const char *attack) {
  check_read(h, attack);
  printk("HEARTH-HOSTILE %s ok\n", attack);
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next) {
  d->addr = addr;
  d->len = len;
  d->flags = flags;
  d->next = next;
}

static void hdr_desc(struct hostile *h, struct vring_desc *d, uint16_t next) {
  set_desc(d, (uint64_t)&h->r->hdr, sizeof(h->r->hdr), VRING_DESC_F_NEXT, next);
}
static void status_desc(struct hostile *h, struct vring_desc *d) {
  set_desc(d, (uint64_t)&h->r->status, 1, VRING_DESC_F_WRITE, 0);
}
static void data_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t next) {
  set_desc(d, addr, len, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, next);
}

// --- malformed chains -------------------------------------------------------

static void build_outside_ram(struct hostile *h, const uint16_t *i) {
  struct vring_desc *t = vq_of(h)->desc;
  hdr_desc(h, &t[i[0]], i[1]);
  data_desc(&t[i[1]], OUTSIDE_RAM, BLK_SECTOR_SIZE, i[2]);
  status_desc(h, &t[i[2]]);
}

static void build_wrap(struct hostile *h, const uint16_t *i) {
  struct vring_desc *t = vq_of(h)->desc;
  hdr_desc(h, &t[i[0]], i[1]);
  data_desc(&t[i[1]], WRAP_ADDR, 0x2000, i[2]);
  status_desc(h, &t[i[2]]);
}

// A write request (all descriptors device-readable, so only the loop is
// wrong): header -> data -> header -> ...
static void build_loop(struct hostile *h, const uint16_t *i) {
  struct vring_desc *t = vq_of(h)->desc;
  h->r->hdr.type = VIRTIO_BLK_T_OUT;
  h->r->hdr.sector = blk_write_sector();
  blk_pattern_fill(h->r->data, blk_write_sector(), BLK_MAGIC_WRITTEN);
  hdr_desc(h, &t[i[0]], i[1]);
  set_desc(&t[i[1]], (uint64_t)h->r->data, BLK_SECTOR_SIZE, VRING_DESC_F_NEXT, i[0]);
}

static void build_next_out_of_range(struct hostile *h, const uint16_t *i) {
  hdr_desc(h, &vq_of(h)->desc[i[0]], (uint16_t)(vq_of(h)->num + 7));
}

static void build_readable_after_writable(struct hostile *h, const uint16_t *i) {
  struct vring_desc *t = vq_of(h)->desc;
  hdr_desc(h, &t[i[0]], i[1]);
  data_desc(&t[i[1]], (uint64_t)h->r->data, BLK_SECTOR_SIZE, i[2]);
  set_desc(&t[i[2]], (uint64_t)h->r->extra, sizeof(h->r->extra), VRING_DESC_F_NEXT, i[3]);
  status_desc(h, &t[i[3]]);
}

// A correct 3-entry table (hdr, data, status); the ring descriptor lies.
static void fill_table(struct hostile *h) {
  struct vring_desc *t = h->r->table;
  hdr_desc(h, &t[0], 1);
  data_desc(&t[1], (uint64_t)h->r->data, BLK_SECTOR_SIZE, 2);
  status_desc(h, &t[2]);
}

static void build_indirect_bad_len(struct hostile *h, const uint16_t *i) {
  fill_table(h);
  set_desc(&vq_of(h)->desc[i[0]], (uint64_t)h->r->table, 3 * sizeof(struct vring_desc) - 1,
           VRING_DESC_F_INDIRECT, 0);
}

static void build_indirect_outside_ram(struct hostile *h, const uint16_t *i) {
  set_desc(&vq_of(h)->desc[i[0]], OUTSIDE_RAM, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT,
           0);
}

struct chain_attack {
  const char *name;
  unsigned ndesc;
  void (*build)(struct hostile *h, const uint16_t *idx);
  bool indirect;
};

static const struct chain_attack chain_attacks[] = {
    {"desc_outside_ram", 3, build_outside_ram, false},
    {"desc_addr_wrap", 3, build_wrap, false},
    {"chain_loop", 2, build_loop, false},
    {"next_out_of_range", 1, build_next_out_of_range, false},
    {"readable_after_writable", 4, build_readable_after_writable, false},
    {"indirect_bad_len", 1, build_indirect_bad_len, true},
    {"indirect_outside_ram", 1, build_indirect_outside_ram, true},
};

// Waits for the verdict on a bad chain whose completion token is |token|;
// resets the device if it kept the chain or asked for a reset. |status| is
// the chain's status byte (NULL: no status, e.g. rng).
static bool judge_bad_chain(struct virtio_dev *d, struct virtq *vq, void *token,
                            volatile uint8_t *status, const char *attack) {
  uint32_t len = 0;
  void *done = virtq_wait(vq, &len, VIRTIO_POLL, BAD_CHAIN_WAIT_US);
  if (done && done != token) test_fail("%s: completion for a request never made", attack);
  int st = status ? *status : -1;
  bool accepted = done && len != 0 && st != VIRTIO_BLK_S_IOERR && st != VIRTIO_BLK_S_UNSUPP;
  if (accepted) {
    violation(attack, "device completed the bad chain: used len %u, status %d", len, st);
  }
  bool needs_reset = virtio_status(d) & VIRTIO_STATUS_NEEDS_RESET;
  if (done) {
    printk("hostile: %s: completed, used len %u, status %d%s\n", attack, len, st,
           needs_reset ? ", DEVICE_NEEDS_RESET" : "");
  } else {
    printk("hostile: %s: not completed within %u ms%s\n", attack, BAD_CHAIN_WAIT_US / 1000,
           needs_reset ? ", DEVICE_NEEDS_RESET" : "");
  }
  return !done || needs_reset || accepted;
}

static void run_chain_attack(struct hostile *h, const struct chain_attack *a) {
  if (a->indirect && !(h->d->features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))) {
    printk("HEARTH-HOSTILE %s skipped (VIRTIO_F_INDIRECT_DESC not negotiated)\n", a->name);
    return;
  }
  struct raw_req *r = h->r;
  r->hdr = (struct virtio_blk_outhdr){VIRTIO_BLK_T_IN, 0, 0};
  r->status = 0xff;
  uint16_t idx[8];
  if (!virtq_alloc_descs(vq_of(h), a->ndesc, idx)) test_fail("%s: no free descriptors", a->name);
  a->build(h, idx);
  virtq_publish_raw(vq_of(h), idx, a->ndesc, r);
  virtq_notify(vq_of(h));
  if (judge_bad_chain(h->d, vq_of(h), r, &r->status, a->name)) restart(h, a->name);
  good_read(h, a->name);
}

// --- other attacks ------------------------------------------------------------

static void write_read_only(uint8_t *buf) {
  const char *attack = "write_read_only";
  struct virtio_dev *d = NULL;
  static struct virtio_blk ro;
  for (unsigned i = 0; (d = virtio_find(VIRTIO_ID_BLOCK, i)) != NULL; i++) {
    const char *err = blk_init(&ro, d);
    if (err) test_fail("%s: blk%u: %s", attack, i, err);
    if (ro.read_only) break;
  }
  if (d == NULL) {
    printk("HEARTH-HOSTILE %s skipped (no read-only block device)\n", attack);
    return;
  }
  blk_pattern_fill(buf, 1, BLK_MAGIC_WRITTEN);
  int s = blk_io(&ro, VIRTIO_BLK_T_OUT, 1, buf, BLK_SECTOR_SIZE, 1, VIRTIO_POLL);
  printk("hostile: %s: mmio%u: status %d\n", attack, d->index, s);
  if (s != VIRTIO_BLK_S_IOERR) violation(attack, "write gave status %d, want IOERR (1)", s);
  s = blk_io(&ro, VIRTIO_BLK_T_IN, 1, buf, BLK_SECTOR_SIZE, 1, VIRTIO_POLL);
  const char *why = s == VIRTIO_BLK_S_OK ? blk_pattern_check(buf, 1, 1, blk_write_sector()) : NULL;
  if (s != VIRTIO_BLK_S_OK || why) {
    test_fail("%s: read afterwards: status %d %s", attack, s, why ? why : "");
  }
  printk("HEARTH-HOSTILE %s ok\n", attack);
}

static void config_oob(struct hostile *h) {
  const char *attack = "config_oob";
  uint64_t want = 0;
  cmdline_get_u64("hearth.hostile_oob_read", &want);
  uint32_t space = virtio_cfg_space(h->d);
  uint64_t capacity = virtio_cfg_read64(h->d, 0);
  unsigned reads = 0;
  for (int pass = 0; pass < 2; pass++) {  // before and after the writes
    uint32_t bad = 0, bad_off = 0, bad_value = 0;
    for (uint32_t off = OOB_FIRST; off + 4 <= space; off += 4, reads++) {
      uint32_t v = virtio_cfg_read32(h->d, off);
      if (v != (uint32_t)want && bad++ == 0) {
        bad_off = off;
        bad_value = v;
      }
    }
    uint8_t b = virtio_cfg_read8(h->d, space - 1);
    uint16_t w = virtio_cfg_read16(h->d, OOB_FIRST + 2);
    if (bad) {
      violation(attack, "%u config reads beyond the fields were not 0x%lx (offset %u: 0x%x)", bad,
                want, bad_off, bad_value);
    } else if (b != (uint8_t)want || w != (uint16_t)want) {
      violation(attack, "narrow reads gave 0x%x / 0x%x", b, w);
    }
    for (uint32_t off = OOB_FIRST; pass == 0 && off + 4 <= space; off += 4) {
      virtio_cfg_write32(h->d, off, 0xffffffffu);
      virtio_cfg_write8(h->d, off + 1, 0xa5);
    }
  }
  if (virtio_cfg_read64(h->d, 0) != capacity) test_fail("%s: capacity changed", attack);
  if (virtio_status(h->d) & VIRTIO_STATUS_NEEDS_RESET) test_fail("%s: DEVICE_NEEDS_RESET", attack);
  printk("hostile: %s: %u reads of config [%u, %u), writes there ignored\n", attack, reads,
         OOB_FIRST, space);
  good_read(h, attack);
}

static void notify_before_driver_ok(struct hostile *h) {
  const char *attack = "notify_before_driver_ok";
  struct virtio_dev *d = h->d;
  if (!virtio_reset(d)) test_fail("%s: reset", attack);
  const char *err = virtio_negotiate(d, 0);
  if (err == NULL) err = virtio_setup_queue(d, 0, BLK_QUEUE_SIZE);
  if (err) test_fail("%s: %s", attack, err);
  struct raw_req *r = h->r;
  r->hdr = (struct virtio_blk_outhdr){VIRTIO_BLK_T_IN, 0, 0};
  r->status = 0xff;
  struct virtq_buf bufs[3] = {{(uint64_t)&r->hdr, sizeof(r->hdr), false},
                              {(uint64_t)r->data, BLK_SECTOR_SIZE, true},
                              {(uint64_t)&r->status, 1, true}};
  if (virtq_add(&d->vq[0], bufs, 3, r) < 0) test_fail("%s: add", attack);
  virtq_notify(&d->vq[0]);
  time_delay_us(QUIET_WAIT_US);
  uint16_t used = *(volatile uint16_t *)&d->vq[0].used->idx;
  printk("hostile: %s: used idx %u, status byte 0x%x after %u ms\n", attack, used, r->status,
         QUIET_WAIT_US / 1000);
  if (used != 0 || r->status != 0xff) violation(attack, "the device used the request");
  restart(h, attack);
  good_read(h, attack);
}

static void rings_outside_ram(struct hostile *h) {
  const char *attack = "rings_outside_ram";
  struct virtio_dev *d = h->d;
  if (!virtio_reset(d)) test_fail("%s: reset", attack);
  const char *err = virtio_negotiate(d, 0);
  if (err == NULL) {
    err = virtio_setup_queue_at(d, 0, 64, OUTSIDE_RAM, OUTSIDE_RAM + 0x1000, OUTSIDE_RAM + 0x2000);
  }
  if (err) test_fail("%s: %s", attack, err);
  virtio_add_status(d, VIRTIO_STATUS_DRIVER_OK);
  virtio_notify(d, 0);
  uint64_t deadline = time_deadline_us(QUIET_WAIT_US);
  uint32_t status;
  while (!((status = virtio_status(d)) & VIRTIO_STATUS_NEEDS_RESET) && !time_passed(deadline)) {
    cpu_relax();
  }
  printk("hostile: %s: Status 0x%x\n", attack, status);
  if (!(status & VIRTIO_STATUS_NEEDS_RESET)) {
    violation(attack, "Status 0x%x without DEVICE_NEEDS_RESET after DRIVER_OK", status);
  }
  restart(h, attack);
  good_read(h, attack);
}

static void avail_idx_jump(struct hostile *h) {
  const char *attack = "avail_idx_jump";
  struct virtq *vq = vq_of(h);
  uint16_t used_before = *(volatile uint16_t *)&vq->used->idx;
  __atomic_store_n(&vq->avail->idx, (uint16_t)(vq->avail_idx + vq->num + 10), __ATOMIC_RELEASE);
  virtq_notify(vq);
  time_delay_us(QUIET_WAIT_US);
  uint16_t used_after = *(volatile uint16_t *)&vq->used->idx;
  uint32_t status = virtio_status(h->d);
  printk("hostile: %s: used idx %u -> %u, Status 0x%x\n", attack, used_before, used_after, status);
  if (used_after != used_before) {
    violation(attack, "the device completed %u bogus requests",
              (uint16_t)(used_after - used_before));
  }
  restart(h, attack);
  good_read(h, attack);
}

// --- rng ----------------------------------------------------------------------

static void rng_good_read(struct virtio_rng *rng, const char *attack) {
  static uint8_t out[64];
  memset(out, 0, sizeof(out));
  const char *err = rng_read(rng, out, sizeof(out), VIRTIO_POLL);
  if (err) test_fail("%s: good rng read afterwards: %s", attack, err);
  uint8_t any = 0;
  for (unsigned i = 0; i < sizeof(out); i++) any |= out[i];
  if (!any) test_fail("%s: good rng read afterwards gave zeros", attack);
  printk("HEARTH-HOSTILE %s ok\n", attack);
}

static void rng_attack(struct virtio_rng *rng, const char *attack, uint64_t addr, uint16_t flags,
                       uint8_t *check) {
  uint16_t idx;
  if (!virtq_alloc_descs(rng->vq, 1, &idx)) test_fail("%s: no descriptor", attack);
  set_desc(&rng->vq->desc[idx], addr, 64, flags, 0);
  virtq_publish_raw(rng->vq, &idx, 1, rng);
  virtq_notify(rng->vq);
  bool reset = judge_bad_chain(rng->dev, rng->vq, rng, NULL, attack);
  for (unsigned i = 0; check && i < 64; i++) {
    if (check[i] != 0x5a) {
      violation(attack, "the device wrote a device-readable buffer");
      reset = true;
      break;
    }
  }
  if (reset) {
    const char *err = rng_init(rng, rng->dev);
    if (err) test_fail("%s: re-initialising the rng: %s", attack, err);
  }
  rng_good_read(rng, attack);
}

static void rng_attacks(void) {
  struct virtio_dev *d = virtio_find(VIRTIO_ID_RNG, 0);
  if (d == NULL) {
    printk("HEARTH-HOSTILE rng_desc_outside_ram skipped (no rng device)\n");
    printk("HEARTH-HOSTILE rng_readable_buffer skipped (no rng device)\n");
    return;
  }
  static struct virtio_rng rng;
  const char *err = rng_init(&rng, d);
  if (err) test_fail("rng: %s", err);
  rng_attack(&rng, "rng_desc_outside_ram", OUTSIDE_RAM, VRING_DESC_F_WRITE, NULL);
  static uint8_t readable[64];
  memset(readable, 0x5a, sizeof(readable));
  rng_attack(&rng, "rng_readable_buffer", (uint64_t)readable, 0, readable);
}

static uint64_t hostile_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  static struct hostile h;
  h.r = heap_alloc(sizeof(struct raw_req), 4096);
  h.buf = heap_alloc(BLK_SECTOR_SIZE, 4096);
  for (unsigned i = 0; (h.d = virtio_find(VIRTIO_ID_BLOCK, i)) != NULL; i++) {
    const char *err = blk_init(&h.blk, h.d);
    if (err) test_fail("blk%u: %s", i, err);
    if (!h.blk.read_only) break;
  }
  if (h.d == NULL) test_fail("no writable virtio block device");
  printk("hostile: target mmio%u, features 0x%lx, queue size %u\n", h.d->index, h.d->features,
         h.blk.vq->num);
  check_read(&h, "first read");
  for (unsigned i = 0; i < sizeof(chain_attacks) / sizeof(chain_attacks[0]); i++) {
    run_chain_attack(&h, &chain_attacks[i]);
  }
  write_read_only(h.buf);
  config_oob(&h);
  notify_before_driver_ok(&h);
  rings_outside_ram(&h);
  avail_idx_jump(&h);
  rng_attacks();
  test_pass();
}

static void hostile(void) { virtio_scenario(hostile_main); }
SCENARIO(hostile, hostile);
