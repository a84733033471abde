// virtio-blk driver (virtio 1.2 §5.2): one request queue, requests of
// header (16 bytes, device-readable) + data buffers + status byte
// (device-writable), §5.2.6.
//
// Negotiates VIRTIO_BLK_F_RO, _FLUSH, _SEG_MAX and _SIZE_MAX when offered
// (plus the generic features of virtio/mmio.h). Requests are asynchronous
// (blk_submit / blk_next_done / blk_release, as the benchmark uses them) or
// synchronous (blk_io, everything else).
#ifndef GUEST_VIRTIO_BLK_H_
#define GUEST_VIRTIO_BLK_H_

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_FLUSH 9

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define BLK_SECTOR_SIZE 512
#define BLK_QUEUE_SIZE 128

// Results of blk_io besides the device's status byte.
#define BLK_TIMEOUT (-1)
#define BLK_QUEUE_FULL (-2)

struct virtio_blk_outhdr {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

// One request. The header and status live here (the device reads hdr and
// writes status); the data buffers belong to the caller.
struct blk_req {
  struct virtio_blk_outhdr hdr;
  volatile uint8_t status;
  bool in_flight;
  uint32_t used_len;  // set on completion
  uint64_t user;      // for the caller
};

struct virtio_blk {
  struct virtio_dev *dev;
  struct virtq *vq;
  uint64_t capacity;  // 512-byte sectors
  uint32_t seg_max;   // 0: not offered
  uint32_t size_max;  // 0: not offered
  bool read_only;
  bool has_flush;
  struct blk_req *reqs;  // BLK_QUEUE_SIZE, on the heap
  uint32_t completed;
};

// Starts the device (one queue) and reads its configuration. NULL or error.
const char *blk_init(struct virtio_blk *b, struct virtio_dev *d);

// Queues a request without notifying: |len| bytes at |buf| split into
// |segs| equal descriptors (len % segs == 0); no data for FLUSH (len 0).
// Returns NULL if the queue is full.
struct blk_req *blk_submit(struct virtio_blk *b, uint32_t type, uint64_t sector, void *buf,
                           uint32_t len, unsigned segs);
// Index in reqs[] of the request slot blk_submit() will use next (the
// lowest free one), or -1 if all are in flight.
int blk_free_slot(struct virtio_blk *b);
// The next completed request (NULL if none), without waiting.
struct blk_req *blk_next_done(struct virtio_blk *b);
void blk_release(struct virtio_blk *b, struct blk_req *r);

// Submit, kick, wait (hearth.timeout_ms): the status byte, BLK_TIMEOUT or
// BLK_QUEUE_FULL. On a timeout the request stays owned by the device: reset
// it before reusing the queue.
int blk_io(struct virtio_blk *b, uint32_t type, uint64_t sector, void *buf, uint32_t len,
           unsigned segs, enum virtio_wait how);

// The second half of blk_io: kick, wait for |r| (the only request in
// flight) and release it; its status, or BLK_TIMEOUT.
int blk_kick_and_wait(struct virtio_blk *b, struct blk_req *r, enum virtio_wait how);

// The GET_ID serial (up to 20 bytes, NUL-terminated into out[21]): status.
int blk_get_id(struct virtio_blk *b, char out[VIRTIO_BLK_ID_BYTES + 1], enum virtio_wait how);

#endif  // GUEST_VIRTIO_BLK_H_
