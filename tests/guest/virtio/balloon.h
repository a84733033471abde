// virtio-balloon driver (virtio 1.2 §5.5): inflateq (0) and deflateq (1)
// take arrays of 4 KiB page frame numbers (u32), statsq (2, only with
// VIRTIO_BALLOON_F_STATS_VQ) carries one buffer of {u16 tag, u64 value}
// entries that the device returns whenever it wants fresh statistics.
// Configuration: num_pages (the device's target, read-only) and actual
// (what the driver has given, written by the driver).
//
// Offer-agnostic: accepts MUST_TELL_HOST (the driver always tells),
// STATS_VQ and DEFLATE_ON_OOM when offered, nothing else.
#ifndef GUEST_VIRTIO_BALLOON_H_
#define GUEST_VIRTIO_BALLOON_H_

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"

#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2

#define BALLOON_PAGE_SIZE 4096
#define BALLOON_PFNS_PER_REQUEST 256

// §5.5.6.3 statistics tags used here.
#define VIRTIO_BALLOON_S_SWAP_IN 0
#define VIRTIO_BALLOON_S_SWAP_OUT 1
#define VIRTIO_BALLOON_S_MAJFLT 2
#define VIRTIO_BALLOON_S_MINFLT 3
#define VIRTIO_BALLOON_S_MEMFREE 4
#define VIRTIO_BALLOON_S_MEMTOT 5
#define VIRTIO_BALLOON_S_AVAIL 6
#define BALLOON_NUM_STATS 7

struct __attribute__((packed)) virtio_balloon_stat {
  uint16_t tag;
  uint64_t val;
};

struct virtio_balloon {
  struct virtio_dev *dev;
  struct virtq *inflate_vq;
  struct virtq *deflate_vq;
  struct virtq *stats_vq;             // NULL without STATS_VQ
  uint32_t *pfns;                     // BALLOON_PFNS_PER_REQUEST, device-readable
  struct virtio_balloon_stat *stats;  // BALLOON_NUM_STATS, device-readable
};

const char *balloon_init(struct virtio_balloon *b, struct virtio_dev *d);
uint32_t balloon_num_pages(struct virtio_balloon *b);
uint32_t balloon_actual(struct virtio_balloon *b);
void balloon_set_actual(struct virtio_balloon *b, uint32_t pages);
// Gives (inflate) or takes back (deflate) |count| pages starting at the
// page-aligned guest-physical address |first|, in batches of at most
// BALLOON_PFNS_PER_REQUEST, each completed before the next.
const char *balloon_inflate(struct virtio_balloon *b, uint64_t first, uint32_t count);
const char *balloon_deflate(struct virtio_balloon *b, uint64_t first, uint32_t count);
// Fills in the statistics and makes the stats buffer available.
const char *balloon_post_stats(struct virtio_balloon *b);

#endif  // GUEST_VIRTIO_BALLOON_H_
