// Split virtqueues (virtio 1.2 §2.7), driver side, in guest RAM.
//
// One struct virtq per queue: descriptor table (16-byte aligned), available
// ring and used ring (each on its own page: more alignment than §2.7 asks),
// plus driver-private bookkeeping the device never sees (free list, the
// descriptors each chain owns, a token per chain). Chains are freed from that
// private copy, never by following the device-visible `next` fields, so
// hand-written malformed chains (scenarios/virtio_hostile.c) cannot corrupt
// the free list.
//
// Optional features, used when negotiated (virtio/mmio.c decides):
//   VIRTIO_F_INDIRECT_DESC (§2.7.5.3): a chain of more than one buffer goes
//     into a per-head indirect table; one ring descriptor per request.
//   VIRTIO_F_EVENT_IDX (§2.7.7, §2.7.10): kicks and interrupts are
//     suppressed with avail_event / used_event instead of the flags.
//
// Not thread-safe: one CPU drives a queue. Works at CPL0 and CPL3 (the data
// path runs at CPL3, natively on this host; the notify is an MMIO write).
#ifndef GUEST_VIRTIO_VIRTQ_H_
#define GUEST_VIRTIO_VIRTQ_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTQ_MAX_SIZE 256  // we never ask for more (QueueNumMax may be larger)
#define VIRTQ_MAX_SG 32     // buffers per chain (and entries per indirect table)

// §2.7.5 descriptor flags.
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
// §2.7.6 / §2.7.8 suppression flags.
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct vring_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[];  // [num], then used_event (EVENT_IDX)
};

struct vring_used_elem {
  uint32_t id;
  uint32_t len;
};

struct vring_used {
  uint16_t flags;
  uint16_t idx;
  struct vring_used_elem ring[];  // [num], then avail_event (EVENT_IDX)
};

// One buffer of a chain. Device-readable buffers must come first (§2.7.4.2).
struct virtq_buf {
  uint64_t addr;
  uint32_t len;
  bool device_writes;
};

struct virtio_dev;

struct virtq_slot {
  void *token;
  uint16_t ndesc;  // ring descriptors owned by the chain; 0 = slot free
};

struct virtq {
  struct virtio_dev *dev;
  uint16_t index;
  uint16_t num;  // queue size in use; 0 = not set up
  bool event_idx;
  bool indirect;
  bool irq_off;  // interrupts suppressed (virtq_set_irq)
  struct vring_desc *desc;
  struct vring_avail *avail;
  struct vring_used *used;
  uint16_t avail_idx;   // next avail->idx to publish
  uint16_t kicked_idx;  // avail_idx at the last notify decision
  uint16_t last_used;   // next used->ring entry to consume
  uint16_t num_free;
  uint16_t free_list[VIRTQ_MAX_SIZE];       // stack of free descriptor indices
  uint16_t chain_next[VIRTQ_MAX_SIZE];      // private copy of each chain's links
  struct virtq_slot slots[VIRTQ_MAX_SIZE];  // by head index
  struct vring_desc *indirect_tables;       // num * VIRTQ_MAX_SG, allocated on first use
  uint16_t mem_num;                         // capacity of the ring memory allocated so far
  uint32_t notifies;                        // QueueNotify writes (statistics)
};

// Full barrier (stores before later loads): a locked read-modify-write, as
// Linux does on x86; mfence is not emulated at CPL0 on this host.
static inline void virtio_mb(void) { __asm__ volatile("lock; orl $0, (%%rsp)" ::: "memory", "cc"); }

// Allocates (first time or when growing) and clears the rings for |num|
// entries (a power of two <= VIRTQ_MAX_SIZE) and resets the driver state.
void virtq_init(struct virtq *vq, struct virtio_dev *dev, uint16_t index, uint16_t num,
                bool event_idx, bool indirect);

// Adds a chain and publishes it in the available ring (without notifying).
// Returns the head descriptor index, or -1 if the queue is full or the chain
// is empty or longer than VIRTQ_MAX_SG.
int virtq_add(struct virtq *vq, const struct virtq_buf *bufs, unsigned n, void *token);
// Notifies the device if it asked for it (§2.7.10, §2.7.7).
void virtq_kick(struct virtq *vq);
// Notifies unconditionally.
void virtq_notify(struct virtq *vq);

// The next used chain's token (and used length), or NULL if none is ready.
// Ends the test if the device returns an id it was never given.
void *virtq_get(struct virtq *vq, uint32_t *len);
bool virtq_has_used(struct virtq *vq);
// Used-buffer notifications on or off (§2.7.7 / §2.7.10).
void virtq_set_irq(struct virtq *vq, bool on);

// For hand-made chains: takes n free descriptors (indices in idx[]); false
// if there are not enough.
bool virtq_alloc_descs(struct virtq *vq, unsigned n, uint16_t *idx);
// Publishes the chain headed by idx[0] that owns idx[0..n), whatever the
// descriptor table says (the caller wrote the descriptors).
void virtq_publish_raw(struct virtq *vq, const uint16_t *idx, unsigned n, void *token);

#endif  // GUEST_VIRTIO_VIRTQ_H_
