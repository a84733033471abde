#include "virtio/mmio.h"

#include "arch/cpu.h"
#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "intr/idt.h"
#include "intr/ioapic.h"
#include "kernel/layout.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/string.h"

#define RESET_TIMEOUT_US 100000
#define DEFAULT_TIMEOUT_MS 10000

static struct virtio_dev devs[VIRTIO_MAX_DEVICES];
static unsigned num_devs;
static bool probed;

static uint32_t reg_read(struct virtio_dev *d, uint32_t off) { return mmio_read32(d->base + off); }
static void reg_write(struct virtio_dev *d, uint32_t off, uint32_t v) {
  mmio_write32(d->base + off, v);
}

const char *virtio_device_name(uint32_t id) {
  switch (id) {
    case VIRTIO_ID_NET:
      return "net";
    case VIRTIO_ID_BLOCK:
      return "block";
    case VIRTIO_ID_RNG:
      return "rng";
    case VIRTIO_ID_BALLOON:
      return "balloon";
    case VIRTIO_ID_VSOCK:
      return "vsock";
    default:
      return "other";
  }
}

static int digit_value(char c, unsigned base) {
  int d = 99;
  char lower = (char)(c | 0x20);
  if (c >= '0' && c <= '9') {
    d = c - '0';
  } else if (lower >= 'a' && lower <= 'f') {
    d = lower - 'a' + 10;
  }
  return d < (int)base ? d : -1;
}

static unsigned suffix_shift(char c) {
  switch (c | 0x20) {  // lower case
    case 'g':
      return 30;
    case 'm':
      return 20;
    case 'k':
      return 10;
    default:
      return 0;
  }
}

// Linux memparse(): a number (0x hex or decimal) with an optional K/M/G
// suffix. Advances *s past what it consumed; false if no digits.
static bool parse_size(const char **s, uint64_t *out) {
  const char *p = *s;
  unsigned base = 10;
  if (p[0] == '0' && (p[1] | 0x20) == 'x') {
    base = 16;
    p += 2;
  }
  uint64_t v = 0;
  const char *start = p;
  for (int d; (d = digit_value(*p, base)) >= 0; p++) {
    if (v > (UINT64_MAX - (unsigned)d) / base) return false;
    v = v * base + (unsigned)d;
  }
  if (p == start) return false;
  unsigned shift = suffix_shift(*p);
  if (shift) p++;
  if (shift && v > (UINT64_MAX >> shift)) return false;
  *out = v << shift;
  *s = p;
  return true;
}

// "<size>@<base>:<gsi>[:<id>]" -> window; NULL or why not.
static const char *parse_entry(const char *s, uint64_t *size, uint64_t *base, uint64_t *gsi) {
  if (!parse_size(&s, size) || *s++ != '@') return "bad size";
  if (!parse_size(&s, base) || *s++ != ':') return "bad base";
  if (!parse_size(&s, gsi)) return "bad gsi";
  if (*s == ':') {  // optional platform device id (Linux's ":<id>"), ignored
    uint64_t id;
    s++;
    if (!parse_size(&s, &id)) return "bad id";
  }
  if (*s != '\0') return "trailing characters";
  if (*size < VIRTIO_MMIO_CONFIG) return "window smaller than the register block";
  if (*base < MMIO_HOLE_BASE || *base >= 0x100000000ull || *size > 0x100000000ull - *base) {
    return "window outside the mapped MMIO hole [0xc0000000, 4 GiB)";
  }
  if (*base & 3) return "window not 4-byte aligned";
  return NULL;
}

static void probe_window(const char *spec) {
  uint64_t size, base, gsi;
  const char *err = parse_entry(spec, &size, &base, &gsi);
  if (err) {
    printk("virtio: ignoring virtio_mmio.device=%s: %s\n", spec, err);
    return;
  }
  if (num_devs == VIRTIO_MAX_DEVICES) {
    printk("virtio: ignoring virtio_mmio.device=%s: more than %u\n", spec, VIRTIO_MAX_DEVICES);
    return;
  }
  struct virtio_dev *d = &devs[num_devs];
  memset(d, 0, sizeof(*d));
  d->index = num_devs;
  d->base = base;
  d->size = size;
  d->gsi = (unsigned)gsi;
  uint32_t magic = reg_read(d, VIRTIO_MMIO_MAGIC);
  d->version = reg_read(d, VIRTIO_MMIO_VERSION);
  d->device_id = reg_read(d, VIRTIO_MMIO_DEVICE_ID);
  d->vendor_id = reg_read(d, VIRTIO_MMIO_VENDOR_ID);
  const char *refused = NULL;
  if (magic != VIRTIO_MMIO_MAGIC_VALUE) {
    refused = "bad magic";
  } else if (d->version == 1) {
    refused = "legacy (Version 1) device refused";
  } else if (d->version != 2) {
    refused = "unknown version";
  } else if (d->device_id == 0) {
    refused = "no device (ID 0)";
  } else if (gsi >= NUM_GSIS) {
    printk("virtio: mmio%u: GSI %lu beyond the I/O APIC: polling only\n", d->index, gsi);
  }
  printk(
      "virtio: mmio%u 0x%lx size 0x%lx gsi %lu: magic 0x%x version %u id %u (%s) "
      "vendor 0x%x%s%s\n",
      d->index, base, size, gsi, magic, d->version, d->device_id, virtio_device_name(d->device_id),
      d->vendor_id, refused ? ": " : "", refused ? refused : "");
  if (refused) d->device_id = 0;  // never matched by virtio_find
  num_devs++;
}

void virtio_probe(void) {
  if (probed) return;
  probed = true;
  time_init();
  char spec[64];
  const char *pos = NULL;
  while ((pos = cmdline_next("virtio_mmio.device", pos, spec, sizeof(spec))) != NULL) {
    probe_window(spec);
  }
}

unsigned virtio_num_devices(void) { return num_devs; }
struct virtio_dev *virtio_device(unsigned i) {
  return i < num_devs ? &devs[i] : NULL;
}

struct virtio_dev *virtio_find(uint32_t device_id, unsigned nth) {
  for (unsigned i = 0; i < num_devs; i++) {
    if (devs[i].device_id == device_id && nth-- == 0) return &devs[i];
  }
  return NULL;
}

uint64_t virtio_generic_features(void) {
  uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1);
  if (!cmdline_has_word("hearth.virtio_features", "noevent")) f |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
  if (!cmdline_has_word("hearth.virtio_features", "noindirect")) {
    f |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
  }
  return f;
}

uint64_t virtio_timeout_us(void) {
  uint64_t ms = DEFAULT_TIMEOUT_MS;
  cmdline_get_u64("hearth.timeout_ms", &ms);
  return ms * 1000;
}

uint32_t virtio_status(struct virtio_dev *d) { return reg_read(d, VIRTIO_MMIO_STATUS); }

void virtio_add_status(struct virtio_dev *d, uint32_t bits) {
  reg_write(d, VIRTIO_MMIO_STATUS, virtio_status(d) | bits);
}

bool virtio_reset(struct virtio_dev *d) {
  reg_write(d, VIRTIO_MMIO_STATUS, 0);
  for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) d->vq[q].num = 0;
  d->num_queues = 0;
  uint64_t deadline = time_deadline_us(RESET_TIMEOUT_US);
  while (virtio_status(d) != 0) {  // §4.2.3.1: wait for the reset to finish
    if (time_passed(deadline)) return false;
    cpu_relax();
  }
  return true;
}

const char *virtio_negotiate(struct virtio_dev *d, uint64_t wanted) {
  virtio_add_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
  virtio_add_status(d, VIRTIO_STATUS_DRIVER);
  reg_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
  uint64_t lo = reg_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
  reg_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  uint64_t hi = reg_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
  d->offered = hi << 32 | lo;
  d->features = d->offered & (wanted | virtio_generic_features());
  if (!(d->features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
    return "device does not offer VIRTIO_F_VERSION_1";
  }
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
  virtio_add_status(d, VIRTIO_STATUS_FEATURES_OK);
  if (!(virtio_status(d) & VIRTIO_STATUS_FEATURES_OK)) return "device refused FEATURES_OK";
  return NULL;
}

static void write_addr(struct virtio_dev *d, uint32_t low_reg, uint64_t addr) {
  reg_write(d, low_reg, (uint32_t)addr);
  reg_write(d, low_reg + 4, (uint32_t)(addr >> 32));
}

// QueueSel must already select the queue.
static void program_queue(struct virtio_dev *d, uint16_t num, uint64_t desc, uint64_t driver,
                          uint64_t device) {
  reg_write(d, VIRTIO_MMIO_QUEUE_NUM, num);
  write_addr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
  write_addr(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, driver);
  write_addr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, device);
  reg_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

static const char *select_queue(struct virtio_dev *d, unsigned q, uint32_t *max) {
  if (q >= VIRTIO_MAX_QUEUES) return "too many queues";
  reg_write(d, VIRTIO_MMIO_QUEUE_SEL, q);
  if (reg_read(d, VIRTIO_MMIO_QUEUE_READY) != 0) return "queue already ready after reset";
  *max = reg_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
  if (*max == 0) return "queue not available (QueueNumMax 0)";
  return NULL;
}

const char *virtio_setup_queue(struct virtio_dev *d, unsigned q, uint16_t qsize) {
  uint32_t max;
  const char *err = select_queue(d, q, &max);
  if (err) return err;
  uint32_t num = qsize < max ? qsize : max;
  if (num > VIRTQ_MAX_SIZE) num = VIRTQ_MAX_SIZE;
  while (num & (num - 1)) num &= num - 1;  // split rings: a power of two
  struct virtq *vq = &d->vq[q];
  virtq_init(vq, d, (uint16_t)q, (uint16_t)num, d->features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX),
             d->features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
  program_queue(d, (uint16_t)num, (uint64_t)vq->desc, (uint64_t)vq->avail, (uint64_t)vq->used);
  if (q >= d->num_queues) d->num_queues = q + 1;
  return NULL;
}

const char *virtio_setup_queue_at(struct virtio_dev *d, unsigned q, uint16_t num, uint64_t desc,
                                  uint64_t driver, uint64_t device) {
  uint32_t max;
  const char *err = select_queue(d, q, &max);
  if (err) return err;
  d->vq[q].num = 0;  // not ours to use
  program_queue(d, num, desc, driver, device);
  return NULL;
}

// CPL0, interrupts off. Every device on the GSI (normally one) is checked.
static void on_irq(struct trap_frame *f, void *ctx) {
  (void)f;
  unsigned gsi = (unsigned)(uint64_t)ctx;
  for (unsigned i = 0; i < num_devs; i++) {
    struct virtio_dev *d = &devs[i];
    if (d->gsi != gsi || !d->irq_routed) continue;
    uint32_t isr = reg_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
    if (isr == 0) continue;
    reg_write(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
    d->isr_seen |= isr;
    d->irq_count++;
  }
}

void virtio_route_irq(struct virtio_dev *d) {
  if (d->irq_routed || d->gsi >= NUM_GSIS) return;
  irq_register(VEC_IRQ_BASE + d->gsi, on_irq, (void *)(uint64_t)d->gsi);
  d->irq_routed = true;
  ioapic_route(d->gsi, VEC_IRQ_BASE + d->gsi, cpus[0].apic_id, false);
}

const char *virtio_start(struct virtio_dev *d, uint64_t wanted, unsigned nqueues, uint16_t qsize) {
  if (!virtio_reset(d)) return "device did not reset (Status never read 0)";
  const char *err = virtio_negotiate(d, wanted);
  for (unsigned q = 0; err == NULL && q < nqueues; q++) err = virtio_setup_queue(d, q, qsize);
  if (err) {
    virtio_add_status(d, VIRTIO_STATUS_FAILED);
    return err;
  }
  virtio_route_irq(d);
  virtio_add_status(d, VIRTIO_STATUS_DRIVER_OK);
  if (virtio_status(d) & VIRTIO_STATUS_NEEDS_RESET) return "DEVICE_NEEDS_RESET after DRIVER_OK";
  return NULL;
}

void virtio_notify(struct virtio_dev *d, unsigned q) { reg_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, q); }

uint32_t virtio_cfg_space(struct virtio_dev *d) { return (uint32_t)(d->size - VIRTIO_MMIO_CONFIG); }

static bool cfg_ok(struct virtio_dev *d, uint32_t off, uint32_t width) {
  return off <= virtio_cfg_space(d) && width <= virtio_cfg_space(d) - off;
}

static uint64_t cfg_addr(struct virtio_dev *d, uint32_t off) {
  return d->base + VIRTIO_MMIO_CONFIG + off;
}

uint8_t virtio_cfg_read8(struct virtio_dev *d, uint32_t off) {
  return cfg_ok(d, off, 1) ? *(volatile uint8_t *)cfg_addr(d, off) : 0;
}
uint16_t virtio_cfg_read16(struct virtio_dev *d, uint32_t off) {
  return cfg_ok(d, off, 2) ? *(volatile uint16_t *)cfg_addr(d, off) : 0;
}
uint32_t virtio_cfg_read32(struct virtio_dev *d, uint32_t off) {
  return cfg_ok(d, off, 4) ? mmio_read32(cfg_addr(d, off)) : 0;
}

uint64_t virtio_cfg_read64(struct virtio_dev *d, uint32_t off) {
  uint32_t gen, lo, hi;
  int tries = 0;
  do {  // bounded: a device that never settles gets its last answer
    gen = reg_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
    lo = virtio_cfg_read32(d, off);
    hi = virtio_cfg_read32(d, off + 4);
  } while (reg_read(d, VIRTIO_MMIO_CONFIG_GENERATION) != gen && ++tries < 100);
  return (uint64_t)hi << 32 | lo;
}

void virtio_cfg_write8(struct virtio_dev *d, uint32_t off, uint8_t v) {
  if (cfg_ok(d, off, 1)) *(volatile uint8_t *)cfg_addr(d, off) = v;
}
void virtio_cfg_write32(struct virtio_dev *d, uint32_t off, uint32_t v) {
  if (cfg_ok(d, off, 4)) mmio_write32(cfg_addr(d, off), v);
}

static bool any_used(struct virtio_dev *d) {
  for (unsigned q = 0; q < d->num_queues; q++) {
    if (virtq_has_used(&d->vq[q])) return true;
  }
  return false;
}

// Sleeps or spins until has_used(arg) or the deadline. Before sleeping, the
// used_event / flags store must be visible before the last look at the used
// index (§2.7.10 race), hence the barrier and second look.
static bool wait_until(struct virtio_dev *d, bool (*ready)(void *), void *arg, enum virtio_wait how,
                       uint64_t timeout_us) {
  uint64_t deadline = time_deadline_us(timeout_us);
  if (how == VIRTIO_IRQ && !d->irq_routed) {
    test_fail("virtio mmio%u: interrupt wait without a routed GSI (%u)", d->index, d->gsi);
  }
  for (;;) {
    uint32_t snapshot = d->irq_count;
    if (ready(arg)) return true;
    if (how == VIRTIO_POLL) {
      if (time_passed(deadline)) return ready(arg);
      cpu_relax();
      continue;
    }
    virtio_mb();
    if (ready(arg)) return true;
    if (!time_wait_counter(&d->irq_count, snapshot, deadline)) return ready(arg);
  }
}

static bool vq_ready(void *arg) { return virtq_has_used((struct virtq *)arg); }
static bool dev_ready(void *arg) { return any_used((struct virtio_dev *)arg); }

void *virtq_wait(struct virtq *vq, uint32_t *len, enum virtio_wait how, uint64_t timeout_us) {
  if (how == VIRTIO_IRQ && vq->irq_off) virtq_set_irq(vq, true);
  if (!wait_until(vq->dev, vq_ready, vq, how, timeout_us)) return NULL;
  return virtq_get(vq, len);
}

bool virtio_wait_any(struct virtio_dev *d, enum virtio_wait how, uint64_t timeout_us) {
  for (unsigned q = 0; how == VIRTIO_IRQ && q < d->num_queues; q++) {
    if (d->vq[q].irq_off) virtq_set_irq(&d->vq[q], true);
  }
  return wait_until(d, dev_ready, d, how, timeout_us);
}
