#include "virtio/net.h"

#include "kernel/heap.h"
#include "lib/string.h"

#define CFG_MAC 0

static bool post_rx(struct virtio_net *n, uint8_t *buf) {
  struct virtq_buf b = {(uint64_t)buf, NET_BUF_SIZE, true};
  return virtq_add(n->rx, &b, 1, buf) >= 0;
}

const char *net_init(struct virtio_net *n, struct virtio_dev *d, uint16_t tx_slots) {
  const char *err = virtio_start(d, VIRTIO_BIT(VIRTIO_NET_F_MAC), 2, NET_QUEUE_SIZE);
  if (err) return err;
  n->dev = d;
  n->rx = &d->vq[0];
  n->tx = &d->vq[1];
  n->has_mac = d->features & VIRTIO_BIT(VIRTIO_NET_F_MAC);
  for (unsigned i = 0; i < ETH_ALEN; i++) {
    // Without VIRTIO_NET_F_MAC the driver picks one: locally administered.
    n->mac[i] = n->has_mac ? virtio_cfg_read8(d, CFG_MAC + i) : (uint8_t)(i == 0 ? 0x06 : i);
  }
  if (tx_slots > n->tx->num) tx_slots = n->tx->num;
  if (n->rx_bufs == NULL) n->rx_bufs = heap_alloc(NET_RX_BUFS * NET_BUF_SIZE, 4096);
  if (n->tx_bufs == NULL || n->tx_slots < tx_slots) {
    n->tx_bufs = heap_alloc((uint64_t)tx_slots * NET_BUF_SIZE, 4096);
  }
  n->tx_slots = tx_slots;
  n->tx_free_count = tx_slots;
  for (uint16_t i = 0; i < tx_slots; i++) n->tx_free[i] = i;
  memset(n->tx_bufs, 0, (uint64_t)tx_slots * NET_BUF_SIZE);  // zero headers, once
  n->rx_frames = n->tx_frames = n->tx_completed = 0;
  for (unsigned i = 0; i < NET_RX_BUFS; i++) {
    if (!post_rx(n, n->rx_bufs + i * NET_BUF_SIZE)) return "rx queue too small";
  }
  virtq_kick(n->rx);
  return NULL;
}

unsigned net_tx_reclaim(struct virtio_net *n) {
  unsigned count = 0;
  uint8_t *buf;
  while ((buf = virtq_get(n->tx, NULL)) != NULL) {
    n->tx_free[n->tx_free_count++] = (uint16_t)((buf - n->tx_bufs) / NET_BUF_SIZE);
    count++;
  }
  n->tx_completed += count;
  return count;
}

bool net_send(struct virtio_net *n, const void *frame, uint32_t len, bool kick) {
  if (len > ETH_FRAME_MAX) return false;
  if (n->tx_free_count == 0) net_tx_reclaim(n);
  if (n->tx_free_count == 0) return false;
  uint16_t slot = n->tx_free[--n->tx_free_count];
  uint8_t *buf = n->tx_bufs + (uint64_t)slot * NET_BUF_SIZE;
  memcpy(buf + NET_HDR_SIZE, frame, len);  // the header stays all zero
  struct virtq_buf b = {(uint64_t)buf, NET_HDR_SIZE + len, false};
  if (virtq_add(n->tx, &b, 1, buf) < 0) {
    n->tx_free[n->tx_free_count++] = slot;
    return false;
  }
  n->tx_frames++;
  if (kick) virtq_kick(n->tx);
  return true;
}

unsigned net_poll_rx(struct virtio_net *n, net_rx_fn fn, void *ctx) {
  unsigned count = 0;
  uint8_t *buf;
  uint32_t len;
  while ((buf = virtq_get(n->rx, &len)) != NULL) {
    if (len > NET_HDR_SIZE && len <= NET_BUF_SIZE) fn(buf + NET_HDR_SIZE, len - NET_HDR_SIZE, ctx);
    post_rx(n, buf);  // cannot fail: its descriptor was just freed
    count++;
  }
  if (count) {
    n->rx_frames += count;
    virtq_kick(n->rx);
  }
  return count;
}
