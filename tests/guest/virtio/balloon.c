#include "virtio/balloon.h"

#include "boot/boot_info.h"
#include "kernel/heap.h"

#define CFG_NUM_PAGES 0
#define CFG_ACTUAL 4
#define BALLOON_QUEUE_SIZE 8

const char *balloon_init(struct virtio_balloon *b, struct virtio_dev *d) {
  uint64_t wanted = VIRTIO_BIT(VIRTIO_BALLOON_F_MUST_TELL_HOST) |
                    VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ) |
                    VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
  if (!virtio_reset(d)) return "device did not reset";
  // The number of queues depends on the negotiated features (§5.5.2), so
  // this is virtio_start() spelled out.
  const char *err = virtio_negotiate(d, wanted);
  bool stats = d->features & VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ);
  for (unsigned q = 0; err == NULL && q < (stats ? 3u : 2u); q++) {
    err = virtio_setup_queue(d, q, BALLOON_QUEUE_SIZE);
  }
  if (err) {
    virtio_add_status(d, VIRTIO_STATUS_FAILED);
    return err;
  }
  virtio_route_irq(d);
  virtio_add_status(d, VIRTIO_STATUS_DRIVER_OK);
  b->dev = d;
  b->inflate_vq = &d->vq[0];
  b->deflate_vq = &d->vq[1];
  b->stats_vq = stats ? &d->vq[2] : NULL;
  if (b->pfns == NULL) b->pfns = heap_alloc(4 * BALLOON_PFNS_PER_REQUEST, 64);
  if (b->stats == NULL) b->stats = heap_alloc(sizeof(*b->stats) * BALLOON_NUM_STATS, 64);
  return NULL;
}

uint32_t balloon_num_pages(struct virtio_balloon *b) {
  return virtio_cfg_read32(b->dev, CFG_NUM_PAGES);
}
uint32_t balloon_actual(struct virtio_balloon *b) { return virtio_cfg_read32(b->dev, CFG_ACTUAL); }
void balloon_set_actual(struct virtio_balloon *b, uint32_t pages) {
  virtio_cfg_write32(b->dev, CFG_ACTUAL, pages);
}

static const char *send_pfns(struct virtio_balloon *b, struct virtq *vq, uint64_t first,
                             uint32_t count) {
  uint32_t pfn = (uint32_t)(first / BALLOON_PAGE_SIZE);
  while (count > 0) {
    uint32_t n = count < BALLOON_PFNS_PER_REQUEST ? count : BALLOON_PFNS_PER_REQUEST;
    for (uint32_t i = 0; i < n; i++) b->pfns[i] = pfn + i;
    struct virtq_buf buf = {(uint64_t)b->pfns, 4 * n, false};
    if (virtq_add(vq, &buf, 1, b->pfns) < 0) return "queue full";
    virtq_kick(vq);
    if (virtq_wait(vq, NULL, VIRTIO_IRQ, virtio_timeout_us()) != b->pfns) {
      return "PFN batch not returned in time";
    }
    pfn += n;
    count -= n;
  }
  return NULL;
}

const char *balloon_inflate(struct virtio_balloon *b, uint64_t first, uint32_t count) {
  return send_pfns(b, b->inflate_vq, first, count);
}

const char *balloon_deflate(struct virtio_balloon *b, uint64_t first, uint32_t count) {
  return send_pfns(b, b->deflate_vq, first, count);
}

const char *balloon_post_stats(struct virtio_balloon *b) {
  if (b->stats_vq == NULL) return "no stats queue";
  static const uint16_t tags[BALLOON_NUM_STATS] = {
      VIRTIO_BALLOON_S_SWAP_IN, VIRTIO_BALLOON_S_SWAP_OUT, VIRTIO_BALLOON_S_MAJFLT,
      VIRTIO_BALLOON_S_MINFLT,  VIRTIO_BALLOON_S_MEMFREE,  VIRTIO_BALLOON_S_MEMTOT,
      VIRTIO_BALLOON_S_AVAIL};
  uint64_t free = heap_free_bytes();
  uint64_t values[BALLOON_NUM_STATS] = {0, 0, 0, 0, free, boot_mem_ram_total(), free};
  for (unsigned i = 0; i < BALLOON_NUM_STATS; i++) {
    b->stats[i].tag = tags[i];
    b->stats[i].val = values[i];
  }
  struct virtq_buf buf = {(uint64_t)b->stats, sizeof(*b->stats) * BALLOON_NUM_STATS, false};
  if (virtq_add(b->stats_vq, &buf, 1, b->stats) < 0) return "stats queue full";
  virtq_kick(b->stats_vq);
  return NULL;
}
