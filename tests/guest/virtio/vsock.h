// virtio-vsock driver (virtio 1.2 §5.10): stream sockets only.
//
// Queues: rx (0), tx (1), event (2). Every packet is a 44-byte header
// (§5.10.6) followed by its payload; the driver uses two descriptors per
// packet, header then data (the layout Linux used for years, which every
// device accepts). VIRTIO_VSOCK_F_STREAM is accepted when offered.
//
// Credit (§5.10.6.3): every packet the driver sends carries buf_alloc =
// VSOCK_BUF_ALLOC and its fwd_cnt (bytes the application consumed); it never
// sends more than the peer's advertised space, buf_alloc - (tx_cnt -
// fwd_cnt), asks with CREDIT_REQUEST when that is 0, and answers the peer's
// CREDIT_REQUEST with CREDIT_UPDATE.
// Connections: vsock_connect (REQUEST -> RESPONSE), vsock_listen + a peer's
// REQUEST (-> RESPONSE), RW both ways, and the clean close of §5.10.6.5:
// SHUTDOWN(RCV|SEND), then the peer's RST (or an RST of our own after a
// grace period); a peer's full SHUTDOWN is answered with RST. Packets for no
// connection are answered with RST. Transport-reset events close everything.
//
// Everything is driven by vsock_poll(), called from the wait loops; the
// driver runs at CPL3 and sleeps on the device interrupt.
#ifndef GUEST_VIRTIO_VSOCK_H_
#define GUEST_VIRTIO_VSOCK_H_

#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"

#define VIRTIO_VSOCK_F_STREAM 0

#define VSOCK_TYPE_STREAM 1

#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7

#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

#define VSOCK_HOST_CID 2
#define VSOCK_BUF_ALLOC 65536  // what the guest advertises (and can hold)
#define VSOCK_MAX_CONNS 4

struct __attribute__((packed)) virtio_vsock_hdr {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};

enum vsock_state {
  VSOCK_CLOSED,
  VSOCK_LISTENING,   // waiting for a REQUEST to local_port
  VSOCK_CONNECTING,  // REQUEST sent
  VSOCK_CONNECTED,
  VSOCK_CLOSING,  // our SHUTDOWN sent, waiting for RST
};

struct vsock_conn {
  enum vsock_state state;
  uint32_t local_port;
  uint64_t peer_cid;
  uint32_t peer_port;
  uint32_t peer_buf_alloc;  // from the peer's last header
  uint32_t peer_fwd_cnt;
  uint32_t tx_cnt;         // payload bytes sent
  uint32_t fwd_cnt;        // payload bytes consumed by the application
  uint32_t fwd_cnt_sent;   // fwd_cnt in our last header
  uint32_t peer_shutdown;  // VSOCK_SHUTDOWN_* received
  bool reset;              // ended by RST (refused, or reset by the peer)
  uint8_t *rx_data;        // VSOCK_BUF_ALLOC bytes, unconsumed payload
  uint32_t rx_len;
};

struct virtio_vsock {
  struct virtio_dev *dev;
  struct virtq *rx;
  struct virtq *tx;
  struct virtq *event;
  uint64_t guest_cid;
  uint8_t *rx_bufs;
  uint8_t *tx_bufs;
  uint16_t tx_free_count;
  uint16_t tx_free[VIRTQ_MAX_SIZE];
  uint32_t *events;
  struct vsock_conn *conns[VSOCK_MAX_CONNS];
  uint32_t rx_packets;
  uint32_t tx_packets;
  uint32_t rsts_sent;
  uint32_t dropped;  // malformed or for another CID
  uint32_t transport_resets;
};

const char *vsock_init(struct virtio_vsock *v, struct virtio_dev *d);
// Handles every received packet and event, reclaims tx buffers.
void vsock_poll(struct virtio_vsock *v);
// Sleeps until the device interrupts (or |us| pass), then vsock_poll().
void vsock_wait(struct virtio_vsock *v, uint64_t us);

// Each returns NULL or why not; |deadline| is a TSC value (kernel/time.h).
const char *vsock_connect(struct virtio_vsock *v, struct vsock_conn *c, uint32_t local_port,
                          uint64_t cid, uint32_t port, uint64_t deadline);
// Registers c for one incoming connection to |port| (no wait).
void vsock_listen(struct virtio_vsock *v, struct vsock_conn *c, uint32_t port);
const char *vsock_accept(struct virtio_vsock *v, struct vsock_conn *c, uint64_t deadline);
const char *vsock_send(struct virtio_vsock *v, struct vsock_conn *c, const void *data, uint32_t len,
                       uint64_t deadline);
// Receives exactly |len| bytes.
const char *vsock_recv(struct virtio_vsock *v, struct vsock_conn *c, void *buf, uint32_t len,
                       uint64_t deadline);
// Clean close; the connection is CLOSED afterwards either way.
const char *vsock_close(struct virtio_vsock *v, struct vsock_conn *c, uint64_t deadline);

#endif  // GUEST_VIRTIO_VSOCK_H_
