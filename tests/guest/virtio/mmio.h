// virtio-mmio transport, driver side (virtio 1.2 §4.2: register layout
// §4.2.2, initialisation §3.1.1 and §4.2.3), and device discovery.
//
// Devices are announced on the command line as Linux does it
// (Documentation/admin-guide/kernel-parameters.txt, virtio_mmio.device=):
//   virtio_mmio.device=<size>@<base>:<gsi>[:<id>]
// size with an optional K/M/G suffix, base in hex (0x) or decimal, gsi in
// decimal. Hearth uses 4K windows at 0xd0000000 + 4 KiB * i, GSI 5 + i;
// QEMU's microvm (with acpi=off) 512-byte windows from 0xfeb00000 up, and
// lists them in reverse address order. Only modern (Version 2) devices are
// used; legacy (Version 1) windows are reported and refused.
//
// A driver (virtio/blk.c is the model) calls, with the features it wants:
//   virtio_start(dev, wanted, nqueues, qsize)   -> NULL or an error string
// which resets the device, negotiates (always VIRTIO_F_VERSION_1, plus
// VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC unless hearth.virtio_features
// says noevent / noindirect), sets up the split queues, routes the GSI through
// the I/O APIC (edge, active high) and sets DRIVER_OK. The steps are also
// exported one by one for scenarios that break the sequence on purpose.
//
// The interrupt handler (CPL0) only reads InterruptStatus, writes it back to
// InterruptACK and bumps irq_count; drivers consume used rings at CPL3.
#ifndef GUEST_VIRTIO_MMIO_H_
#define GUEST_VIRTIO_MMIO_H_

#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtq.h"

// Register offsets (§4.2.2).
#define VIRTIO_MMIO_MAGIC 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976  // "virt"

// Device status bits (§2.1).
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

// InterruptStatus bits (§4.2.2).
#define VIRTIO_ISR_USED 1
#define VIRTIO_ISR_CONFIG 2

// Reserved feature bits (§6).
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_BIT(n) (1ull << (n))

// Device IDs (§5).
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

#define VIRTIO_MAX_DEVICES 8
#define VIRTIO_MAX_QUEUES 3

struct virtio_dev {
  unsigned index;  // position among the virtio_mmio.device= entries
  uint64_t base;
  uint64_t size;  // window size: 512 (QEMU) or 4096 (Hearth)
  unsigned gsi;
  uint32_t version;
  uint32_t device_id;
  uint32_t vendor_id;
  uint64_t offered;   // DeviceFeatures at the last negotiation
  uint64_t features;  // negotiated
  unsigned num_queues;
  struct virtq vq[VIRTIO_MAX_QUEUES];
  bool irq_routed;
  volatile uint32_t irq_count;  // interrupts taken (CPL0 handler)
  volatile uint32_t isr_seen;   // InterruptStatus bits seen since last cleared
};

// How a driver waits for a used buffer.
enum virtio_wait {
  VIRTIO_POLL,  // spin on the used ring (at CPL3: native, no exits)
  VIRTIO_IRQ,   // sleep in hlt until the device's interrupt
};

// Parses the command line and probes every window once (later calls return
// the same result). Prints one line per window. Any CPL (MMIO only).
void virtio_probe(void);
unsigned virtio_num_devices(void);
struct virtio_dev *virtio_device(unsigned i);
// The nth (0-based) modern device with |device_id|, or NULL.
struct virtio_dev *virtio_find(uint32_t device_id, unsigned nth);
const char *virtio_device_name(uint32_t device_id);

// Feature bits this run may use beyond the device-specific ones: VERSION_1,
// and EVENT_IDX / INDIRECT_DESC unless hearth.virtio_features turns them off.
uint64_t virtio_generic_features(void);

// The whole initialisation (§3.1.1). Returns NULL or what went wrong; on
// failure the device is left with FAILED set.
const char *virtio_start(struct virtio_dev *d, uint64_t wanted, unsigned nqueues, uint16_t qsize);

// The steps of virtio_start, for scenarios that misbehave on purpose.
// Writes 0 to Status and waits (up to 100 ms) until it reads back 0;
// forgets all queue state. Returns false if the device never reset.
bool virtio_reset(struct virtio_dev *d);
uint32_t virtio_status(struct virtio_dev *d);
void virtio_add_status(struct virtio_dev *d, uint32_t bits);  // read-modify-write
// ACKNOWLEDGE, DRIVER, features (offered & (wanted | generic)), FEATURES_OK.
const char *virtio_negotiate(struct virtio_dev *d, uint64_t wanted);
// Sets up queue |q| with min(qsize, QueueNumMax) entries in guest RAM.
const char *virtio_setup_queue(struct virtio_dev *d, unsigned q, uint16_t qsize);
// Programs queue |q| with arbitrary ring addresses (rings the driver does
// not own: the caller must not use the virtq), then QueueReady = 1.
const char *virtio_setup_queue_at(struct virtio_dev *d, unsigned q, uint16_t num, uint64_t desc,
                                  uint64_t driver, uint64_t device);
// Routes the GSI to vector VEC_IRQ_BASE + gsi on the BSP (once).
void virtio_route_irq(struct virtio_dev *d);
void virtio_notify(struct virtio_dev *d, unsigned q);

// Device-specific configuration space (§4.2.2 offset 0x100), in the access
// widths §4.2.2.2 requires. Offsets beyond the window read as 0 and writes
// there are dropped (the guest never touches another device's window).
uint8_t virtio_cfg_read8(struct virtio_dev *d, uint32_t off);
uint16_t virtio_cfg_read16(struct virtio_dev *d, uint32_t off);
uint32_t virtio_cfg_read32(struct virtio_dev *d, uint32_t off);
// Two 32-bit reads, retried until ConfigGeneration is stable (§4.2.2.2).
uint64_t virtio_cfg_read64(struct virtio_dev *d, uint32_t off);
void virtio_cfg_write8(struct virtio_dev *d, uint32_t off, uint8_t v);
void virtio_cfg_write32(struct virtio_dev *d, uint32_t off, uint32_t v);
uint32_t virtio_cfg_space(struct virtio_dev *d);  // bytes of window after 0x100

// The guest's wait limit for devices: hearth.timeout_ms (default 10000), in us.
uint64_t virtio_timeout_us(void);

// Waits for the next used buffer of |vq| and returns its token (and used
// length), or NULL when timeout_us passed first. VIRTIO_IRQ sleeps in hlt
// between interrupts (needs a routed GSI); VIRTIO_POLL spins.
void *virtq_wait(struct virtq *vq, uint32_t *len, enum virtio_wait how, uint64_t timeout_us);
// Waits until any of |d|'s queues has a used buffer (or timeout): for
// drivers that serve several queues (net, vsock). Returns false on timeout.
bool virtio_wait_any(struct virtio_dev *d, enum virtio_wait how, uint64_t timeout_us);

#endif  // GUEST_VIRTIO_MMIO_H_
