#include "virtio/rng.h"

#define RNG_QUEUE_SIZE 8
#define MAX_EMPTY_ANSWERS 8

const char *rng_init(struct virtio_rng *r, struct virtio_dev *d) {
  const char *err = virtio_start(d, 0, 1, RNG_QUEUE_SIZE);
  if (err) return err;
  r->dev = d;
  r->vq = &d->vq[0];
  return NULL;
}

const char *rng_read(struct virtio_rng *r, void *buf, uint32_t len, enum virtio_wait how) {
  uint8_t *p = buf;
  unsigned empty = 0;
  while (len > 0) {
    struct virtq_buf b = {(uint64_t)p, len, true};
    if (virtq_add(r->vq, &b, 1, p) < 0) return "queue full";
    virtq_kick(r->vq);
    uint32_t got;
    if (virtq_wait(r->vq, &got, how, virtio_timeout_us()) != p) return "no answer (timeout)";
    if (got > len) return "device claims more bytes than the buffer holds";
    if (got == 0 && ++empty > MAX_EMPTY_ANSWERS) return "device keeps returning 0 bytes";
    p += got;
    len -= got;
  }
  return NULL;
}
