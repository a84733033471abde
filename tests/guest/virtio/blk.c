#include "virtio/blk.h"

#include "kernel/heap.h"
#include "lib/string.h"

// Configuration layout (§5.2.4).
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12

const char *blk_init(struct virtio_blk *b, struct virtio_dev *d) {
  uint64_t wanted = VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
                    VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX);
  const char *err = virtio_start(d, wanted, 1, BLK_QUEUE_SIZE);
  if (err) return err;
  b->dev = d;
  b->vq = &d->vq[0];
  b->capacity = virtio_cfg_read64(d, CFG_CAPACITY);
  b->read_only = d->features & VIRTIO_BIT(VIRTIO_BLK_F_RO);
  b->has_flush = d->features & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
  b->seg_max =
      d->features & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) ? virtio_cfg_read32(d, CFG_SEG_MAX) : 0;
  b->size_max =
      d->features & VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) ? virtio_cfg_read32(d, CFG_SIZE_MAX) : 0;
  if (b->reqs == NULL) b->reqs = heap_alloc(sizeof(struct blk_req) * BLK_QUEUE_SIZE, 64);
  memset(b->reqs, 0, sizeof(struct blk_req) * BLK_QUEUE_SIZE);
  b->completed = 0;
  return NULL;
}

int blk_free_slot(struct virtio_blk *b) {
  for (int i = 0; i < BLK_QUEUE_SIZE; i++) {
    if (!b->reqs[i].in_flight) return i;
  }
  return -1;
}

static struct blk_req *free_req(struct virtio_blk *b) {
  int i = blk_free_slot(b);
  return i < 0 ? NULL : &b->reqs[i];
}

struct blk_req *blk_submit(struct virtio_blk *b, uint32_t type, uint64_t sector, void *buf,
                           uint32_t len, unsigned segs) {
  struct blk_req *r = free_req(b);
  if (r == NULL || (len && (segs == 0 || segs + 2 > VIRTQ_MAX_SG || len % segs))) return NULL;
  if (len == 0) segs = 0;
  r->hdr.type = type;
  r->hdr.reserved = 0;
  r->hdr.sector = sector;
  r->status = 0xff;  // the device must overwrite it
  r->used_len = 0;
  struct virtq_buf bufs[VIRTQ_MAX_SG];
  bufs[0] = (struct virtq_buf){(uint64_t)&r->hdr, sizeof(r->hdr), false};
  bool device_writes = type != VIRTIO_BLK_T_OUT;
  for (unsigned i = 0; i < segs; i++) {
    bufs[1 + i] =
        (struct virtq_buf){(uint64_t)buf + (uint64_t)i * (len / segs), len / segs, device_writes};
  }
  bufs[1 + segs] = (struct virtq_buf){(uint64_t)&r->status, 1, true};
  if (virtq_add(b->vq, bufs, segs + 2, r) < 0) return NULL;
  r->in_flight = true;
  return r;
}

static struct blk_req *finish(struct virtio_blk *b, struct blk_req *r, uint32_t len) {
  r->used_len = len;
  b->completed++;
  return r;
}

struct blk_req *blk_next_done(struct virtio_blk *b) {
  uint32_t len;
  struct blk_req *r = virtq_get(b->vq, &len);
  return r ? finish(b, r, len) : NULL;
}

void blk_release(struct virtio_blk *b, struct blk_req *r) {
  (void)b;
  r->in_flight = false;
}

int blk_io(struct virtio_blk *b, uint32_t type, uint64_t sector, void *buf, uint32_t len,
           unsigned segs, enum virtio_wait how) {
  struct blk_req *r = blk_submit(b, type, sector, buf, len, segs);
  if (r == NULL) return BLK_QUEUE_FULL;
  return blk_kick_and_wait(b, r, how);
}

int blk_kick_and_wait(struct virtio_blk *b, struct blk_req *r, enum virtio_wait how) {
  virtq_kick(b->vq);
  uint32_t used_len;
  struct blk_req *done = virtq_wait(b->vq, &used_len, how, virtio_timeout_us());
  if (done == NULL) return BLK_TIMEOUT;
  finish(b, done, used_len);
  int status = done->status;
  blk_release(b, done);
  // Synchronous use: the one completion must be ours.
  return done == r ? status : BLK_TIMEOUT;
}

int blk_get_id(struct virtio_blk *b, char out[VIRTIO_BLK_ID_BYTES + 1], enum virtio_wait how) {
  static char id[VIRTIO_BLK_ID_BYTES];
  memset(id, 0, sizeof(id));
  int status = blk_io(b, VIRTIO_BLK_T_GET_ID, 0, id, sizeof(id), 1, how);
  memcpy(out, id, VIRTIO_BLK_ID_BYTES);
  out[VIRTIO_BLK_ID_BYTES] = '\0';
  return status;
}
