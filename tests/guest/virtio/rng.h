// virtio-rng (entropy) driver (virtio 1.2 §5.4): one queue of
// device-writable buffers that the device fills with random bytes. No
// feature bits, no configuration space.
#ifndef GUEST_VIRTIO_RNG_H_
#define GUEST_VIRTIO_RNG_H_

#include <stdint.h>

#include "virtio/mmio.h"

struct virtio_rng {
  struct virtio_dev *dev;
  struct virtq *vq;
};

const char *rng_init(struct virtio_rng *r, struct virtio_dev *d);
// Fills buf[0..len) (the device may return fewer bytes per request; asks
// again until full). Returns NULL or why not (timeout, zero-length answer).
const char *rng_read(struct virtio_rng *r, void *buf, uint32_t len, enum virtio_wait how);

#endif  // GUEST_VIRTIO_RNG_H_
