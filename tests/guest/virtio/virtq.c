#include "virtio/virtq.h"

#include "kernel/heap.h"
#include "kernel/test.h"
#include "lib/string.h"
#include "virtio/mmio.h"

#define PAGE 4096

// Ring sizes (§2.7): avail has flags, idx, ring[num], used_event; used has
// flags, idx, ring[num], avail_event.
static uint64_t avail_bytes(uint16_t num) { return 6 + 2ull * num; }
static uint64_t used_bytes(uint16_t num) { return 6 + 8ull * num; }

static volatile uint16_t *used_event(struct virtq *vq) { return &vq->avail->ring[vq->num]; }
static volatile uint16_t *avail_event(struct virtq *vq) {
  return (volatile uint16_t *)&vq->used->ring[vq->num];
}

void virtq_init(struct virtq *vq, struct virtio_dev *dev, uint16_t index, uint16_t num,
                bool event_idx, bool indirect) {
  if (num == 0 || num > VIRTQ_MAX_SIZE || (num & (num - 1))) test_fail("virtq: bad size %u", num);
  if (vq->mem_num < num) {  // heap memory is never freed: grow only
    vq->desc = heap_alloc(16ull * num, PAGE);
    vq->avail = heap_alloc(avail_bytes(num), PAGE);
    vq->used = heap_alloc(used_bytes(num), PAGE);
    vq->indirect_tables = NULL;
    vq->mem_num = num;
  }
  memset(vq->desc, 0, 16ull * num);
  memset(vq->avail, 0, avail_bytes(num));
  memset(vq->used, 0, used_bytes(num));
  if (indirect && vq->indirect_tables == NULL) {
    vq->indirect_tables = heap_alloc(sizeof(struct vring_desc) * VIRTQ_MAX_SG * vq->mem_num, 16);
  }
  vq->dev = dev;
  vq->index = index;
  vq->num = num;
  vq->event_idx = event_idx;
  vq->indirect = indirect;
  vq->irq_off = false;
  vq->avail_idx = vq->kicked_idx = vq->last_used = 0;
  vq->num_free = num;
  for (uint16_t i = 0; i < num; i++) {
    vq->free_list[i] = (uint16_t)(num - 1 - i);  // pops 0, 1, 2, ... first
    vq->slots[i].ndesc = 0;
    vq->slots[i].token = NULL;
  }
  vq->notifies = 0;
}

bool virtq_alloc_descs(struct virtq *vq, unsigned n, uint16_t *idx) {
  if (n == 0 || n > vq->num_free) return false;
  for (unsigned i = 0; i < n; i++) idx[i] = vq->free_list[--vq->num_free];
  return true;
}

static void publish(struct virtq *vq, uint16_t head) {
  vq->avail->ring[vq->avail_idx & (vq->num - 1)] = head;
  vq->avail_idx++;
  // x86 keeps stores in order; the compiler must too (§2.7.13.2: ring entry
  // before idx).
  __atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

void virtq_publish_raw(struct virtq *vq, const uint16_t *idx, unsigned n, void *token) {
  for (unsigned i = 0; i + 1 < n; i++) vq->chain_next[idx[i]] = idx[i + 1];
  vq->slots[idx[0]].token = token;
  vq->slots[idx[0]].ndesc = (uint16_t)n;
  publish(vq, idx[0]);
}

static void fill(struct vring_desc *d, const struct virtq_buf *b, uint16_t flags, uint16_t next) {
  d->addr = b->addr;
  d->len = b->len;
  d->flags = (uint16_t)(flags | (b->device_writes ? VRING_DESC_F_WRITE : 0));
  d->next = next;
}

int virtq_add(struct virtq *vq, const struct virtq_buf *bufs, unsigned n, void *token) {
  if (n == 0 || n > VIRTQ_MAX_SG || vq->num == 0) return -1;
  uint16_t idx[VIRTQ_MAX_SG];
  if (vq->indirect && n > 1) {
    if (!virtq_alloc_descs(vq, 1, idx)) return -1;
    struct vring_desc *table = vq->indirect_tables + (uint64_t)idx[0] * VIRTQ_MAX_SG;
    for (unsigned i = 0; i < n; i++) {
      fill(&table[i], &bufs[i], i + 1 < n ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    }
    struct vring_desc *d = &vq->desc[idx[0]];
    d->addr = (uint64_t)table;
    d->len = (uint32_t)(n * sizeof(struct vring_desc));
    d->flags = VRING_DESC_F_INDIRECT;
    d->next = 0;
    virtq_publish_raw(vq, idx, 1, token);
    return idx[0];
  }
  if (!virtq_alloc_descs(vq, n, idx)) return -1;
  for (unsigned i = 0; i < n; i++) {
    fill(&vq->desc[idx[i]], &bufs[i], i + 1 < n ? VRING_DESC_F_NEXT : 0,
         i + 1 < n ? idx[i + 1] : 0);
  }
  virtq_publish_raw(vq, idx, n, token);
  return idx[0];
}

void virtq_notify(struct virtq *vq) {
  vq->kicked_idx = vq->avail_idx;
  vq->notifies++;
  virtio_notify(vq->dev, vq->index);
}

void virtq_kick(struct virtq *vq) {
  virtio_mb();  // publish avail->idx before reading the device's suppression state
  uint16_t new_idx = vq->avail_idx, old_idx = vq->kicked_idx;
  if (new_idx == old_idx) return;
  bool need;
  if (vq->event_idx) {
    uint16_t event = *avail_event(vq);
    need = (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);  // vring_need_event
  } else {
    need = !(*(volatile uint16_t *)&vq->used->flags & VRING_USED_F_NO_NOTIFY);
  }
  if (need) {
    virtq_notify(vq);
  } else {
    vq->kicked_idx = new_idx;
  }
}

bool virtq_has_used(struct virtq *vq) {
  return vq->num != 0 && __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE) != vq->last_used;
}

void *virtq_get(struct virtq *vq, uint32_t *len) {
  if (!virtq_has_used(vq)) return NULL;
  struct vring_used_elem e = vq->used->ring[vq->last_used & (vq->num - 1)];
  if (e.id >= vq->num || vq->slots[e.id].ndesc == 0) {
    test_fail("virtio dev %u queue %u: device used id %u, not an outstanding chain", vq->dev->index,
              vq->index, e.id);
  }
  struct virtq_slot *s = &vq->slots[e.id];
  void *token = s->token;
  uint16_t d = (uint16_t)e.id;
  for (uint16_t i = 0; i < s->ndesc; i++) {
    vq->free_list[vq->num_free++] = d;
    d = vq->chain_next[d];
  }
  s->ndesc = 0;
  s->token = NULL;
  vq->last_used++;
  if (vq->event_idx && !vq->irq_off) *used_event(vq) = vq->last_used;
  if (len) *len = e.len;
  return token;
}

void virtq_set_irq(struct virtq *vq, bool on) {
  vq->irq_off = !on;
  if (vq->event_idx) {
    // Off: an event index just behind us is crossed again only after 65535
    // more completions.
    *used_event(vq) = on ? vq->last_used : (uint16_t)(vq->last_used - 1);
  } else {
    vq->avail->flags = on ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
  }
  virtio_mb();
}
