// virtio-net driver (virtio 1.2 §5.1): receiveq1 (0) and transmitq1 (1), no
// control queue, no offloads, no VIRTIO_NET_F_MRG_RXBUF: every buffer starts
// with the 12-byte struct virtio_net_hdr (§5.1.6, num_buffers included since
// virtio 1.0), all zero on transmit. Negotiates only VIRTIO_NET_F_MAC (plus
// the generic features).
//
// Receive: NET_RX_BUFS buffers of NET_BUF_SIZE bytes (one device-writable
// descriptor each, >= 1526 bytes as §5.1.6.3.1 asks) are posted at init;
// net_poll_rx() hands each received frame to a callback and re-posts its
// buffer at once, so at most NET_RX_BUFS are ever posted.
// Transmit: header + frame in one descriptor (VERSION_1 implies
// VIRTIO_F_ANY_LAYOUT, §5.1.6.2), from a pool of tx buffers reclaimed by
// polling the used ring.
#ifndef GUEST_VIRTIO_NET_H_
#define GUEST_VIRTIO_NET_H_

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"

#define VIRTIO_NET_F_MAC 5

#define NET_HDR_SIZE 12
#define NET_BUF_SIZE 2048
#define NET_RX_BUFS 8
#define NET_QUEUE_SIZE 256
#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_FRAME_MAX 1514

struct virtio_net {
  struct virtio_dev *dev;
  struct virtq *rx;
  struct virtq *tx;
  uint8_t mac[ETH_ALEN];
  bool has_mac;
  uint8_t *rx_bufs;  // NET_RX_BUFS * NET_BUF_SIZE
  uint8_t *tx_bufs;  // tx_slots * NET_BUF_SIZE
  uint16_t tx_slots;
  uint16_t tx_free_count;
  uint16_t tx_free[NET_QUEUE_SIZE];
  uint64_t rx_frames;
  uint64_t tx_frames;     // queued
  uint64_t tx_completed;  // reclaimed
};

// Starts the device and posts the receive buffers. |tx_slots| transmit
// buffers (clipped to the tx queue size).
const char *net_init(struct virtio_net *n, struct virtio_dev *d, uint16_t tx_slots);

// Queues one frame (<= ETH_FRAME_MAX bytes, copied). Reclaims finished tx
// buffers first; false if all are still in flight. Kicks if |kick|.
bool net_send(struct virtio_net *n, const void *frame, uint32_t len, bool kick);
// Returns finished tx buffers to the pool; the number reclaimed.
unsigned net_tx_reclaim(struct virtio_net *n);

typedef void (*net_rx_fn)(const uint8_t *frame, uint32_t len, void *ctx);
// Delivers every received frame and re-posts its buffer; the number delivered.
unsigned net_poll_rx(struct virtio_net *n, net_rx_fn fn, void *ctx);

#endif  // GUEST_VIRTIO_NET_H_
