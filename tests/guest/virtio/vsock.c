#include "virtio/vsock.h"

#include "kernel/heap.h"
#include "kernel/time.h"
#include "lib/string.h"

#define CFG_GUEST_CID 0
#define VSOCK_QUEUE_SIZE 64
#define RX_BUFS 16
#define TX_SLOTS 16
#define EVENT_BUFS 4
#define HDR_SLOT 64     // header area per packet (44 bytes used)
#define DATA_SLOT 4096  // payload area per packet
#define CLOSE_GRACE_US 2000000
#define TX_STUCK_US 1000000
#define EVENT_TRANSPORT_RESET 0

static struct virtio_vsock_hdr *rx_hdr(struct virtio_vsock *v, unsigned i) {
  return (struct virtio_vsock_hdr *)(v->rx_bufs + i * HDR_SLOT);
}
static uint8_t *rx_data(struct virtio_vsock *v, unsigned i) {
  return v->rx_bufs + RX_BUFS * HDR_SLOT + i * DATA_SLOT;
}
static struct virtio_vsock_hdr *tx_hdr(struct virtio_vsock *v, unsigned i) {
  return (struct virtio_vsock_hdr *)(v->tx_bufs + i * HDR_SLOT);
}
static uint8_t *tx_data(struct virtio_vsock *v, unsigned i) {
  return v->tx_bufs + TX_SLOTS * HDR_SLOT + i * DATA_SLOT;
}

static bool post_rx(struct virtio_vsock *v, unsigned i) {
  struct virtq_buf b[2] = {{(uint64_t)rx_hdr(v, i), sizeof(struct virtio_vsock_hdr), true},
                           {(uint64_t)rx_data(v, i), DATA_SLOT, true}};
  return virtq_add(v->rx, b, 2, (void *)(uint64_t)(i + 1)) >= 0;
}

static bool post_event(struct virtio_vsock *v, unsigned i) {
  struct virtq_buf b = {(uint64_t)&v->events[i], sizeof(uint32_t), true};
  return virtq_add(v->event, &b, 1, (void *)(uint64_t)(i + 1)) >= 0;
}

const char *vsock_init(struct virtio_vsock *v, struct virtio_dev *d) {
  const char *err = virtio_start(d, VIRTIO_BIT(VIRTIO_VSOCK_F_STREAM), 3, VSOCK_QUEUE_SIZE);
  if (err) return err;
  v->dev = d;
  v->rx = &d->vq[0];
  v->tx = &d->vq[1];
  v->event = &d->vq[2];
  v->guest_cid = virtio_cfg_read64(d, CFG_GUEST_CID);
  if (v->rx_bufs == NULL) {
    v->rx_bufs = heap_alloc(RX_BUFS * (HDR_SLOT + DATA_SLOT), 4096);
    v->tx_bufs = heap_alloc(TX_SLOTS * (HDR_SLOT + DATA_SLOT), 4096);
    v->events = heap_alloc(EVENT_BUFS * sizeof(uint32_t), 16);
  }
  v->tx_free_count = TX_SLOTS;
  for (unsigned i = 0; i < TX_SLOTS; i++) v->tx_free[i] = (uint16_t)i;
  for (unsigned i = 0; i < RX_BUFS; i++) {
    if (!post_rx(v, i)) return "rx queue too small";
  }
  for (unsigned i = 0; i < EVENT_BUFS; i++) {
    if (!post_event(v, i)) return "event queue too small";
  }
  virtq_kick(v->rx);
  virtq_kick(v->event);
  return NULL;
}

static void reclaim_tx(struct virtio_vsock *v) {
  void *token;
  while ((token = virtq_get(v->tx, NULL)) != NULL) {
    v->tx_free[v->tx_free_count++] = (uint16_t)((uint64_t)token - 1);
  }
}

// Queues one packet: header |h| (completed with type and our credit) and
// |len| payload bytes. Waits (polling, bounded) for a free tx buffer.
static bool send_raw(struct virtio_vsock *v, const struct virtio_vsock_hdr *h, const void *data,
                     uint32_t len) {
  uint64_t deadline = time_deadline_us(TX_STUCK_US);
  for (reclaim_tx(v); v->tx_free_count == 0; reclaim_tx(v)) {
    if (time_passed(deadline)) return false;
  }
  unsigned slot = v->tx_free[--v->tx_free_count];
  *tx_hdr(v, slot) = *h;
  tx_hdr(v, slot)->len = len;
  memcpy(tx_data(v, slot), data, len);
  struct virtq_buf b[2] = {{(uint64_t)tx_hdr(v, slot), sizeof(*h), false},
                           {(uint64_t)tx_data(v, slot), len, false}};
  if (virtq_add(v->tx, b, len ? 2 : 1, (void *)(uint64_t)(slot + 1)) < 0) {
    v->tx_free[v->tx_free_count++] = (uint16_t)slot;
    return false;
  }
  virtq_kick(v->tx);
  v->tx_packets++;
  return true;
}

static bool send_op(struct virtio_vsock *v, struct vsock_conn *c, uint16_t op, uint32_t flags,
                    const void *data, uint32_t len) {
  struct virtio_vsock_hdr h = {.src_cid = v->guest_cid,
                               .dst_cid = c->peer_cid,
                               .src_port = c->local_port,
                               .dst_port = c->peer_port,
                               .type = VSOCK_TYPE_STREAM,
                               .op = op,
                               .flags = flags,
                               .buf_alloc = VSOCK_BUF_ALLOC,
                               .fwd_cnt = c->fwd_cnt};
  c->fwd_cnt_sent = c->fwd_cnt;
  if (op == VSOCK_OP_RST) v->rsts_sent++;
  return send_raw(v, &h, data, len);
}

// RST in answer to a packet that belongs to no connection (§5.10.6.4).
static void reply_rst(struct virtio_vsock *v, const struct virtio_vsock_hdr *in) {
  struct virtio_vsock_hdr h = {.src_cid = v->guest_cid,
                               .dst_cid = in->src_cid,
                               .src_port = in->dst_port,
                               .dst_port = in->src_port,
                               .type = in->type,
                               .op = VSOCK_OP_RST};
  v->rsts_sent++;
  send_raw(v, &h, NULL, 0);
}

static void close_conn(struct vsock_conn *c, bool reset) {
  c->state = VSOCK_CLOSED;
  c->reset = reset;
}

static struct vsock_conn *find_conn(struct virtio_vsock *v, const struct virtio_vsock_hdr *h) {
  for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
    struct vsock_conn *c = v->conns[i];
    if (c && c->state != VSOCK_CLOSED && c->state != VSOCK_LISTENING &&
        c->local_port == h->dst_port && c->peer_cid == h->src_cid && c->peer_port == h->src_port) {
      return c;
    }
  }
  return NULL;
}

static struct vsock_conn *find_listener(struct virtio_vsock *v, uint32_t port) {
  for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
    struct vsock_conn *c = v->conns[i];
    if (c && c->state == VSOCK_LISTENING && c->local_port == port) return c;
  }
  return NULL;
}

static void accept_request(struct virtio_vsock *v, struct vsock_conn *c,
                           const struct virtio_vsock_hdr *h) {
  c->peer_cid = h->src_cid;
  c->peer_port = h->src_port;
  c->peer_buf_alloc = h->buf_alloc;
  c->peer_fwd_cnt = h->fwd_cnt;
  c->state = VSOCK_CONNECTED;
  send_op(v, c, VSOCK_OP_RESPONSE, 0, NULL, 0);
}

static void on_data(struct virtio_vsock *v, struct vsock_conn *c, const struct virtio_vsock_hdr *h,
                    const uint8_t *data) {
  if (h->len > VSOCK_BUF_ALLOC - c->rx_len) {  // more than the credit we gave
    send_op(v, c, VSOCK_OP_RST, 0, NULL, 0);
    close_conn(c, true);
    return;
  }
  memcpy(c->rx_data + c->rx_len, data, h->len);
  c->rx_len += h->len;
}

// A packet for an existing connection.
static void on_conn_packet(struct virtio_vsock *v, struct vsock_conn *c,
                           const struct virtio_vsock_hdr *h, const uint8_t *data) {
  c->peer_buf_alloc = h->buf_alloc;  // every header carries the peer's credit
  c->peer_fwd_cnt = h->fwd_cnt;
  switch (h->op) {
    case VSOCK_OP_RESPONSE:
      if (c->state == VSOCK_CONNECTING) c->state = VSOCK_CONNECTED;
      break;
    case VSOCK_OP_RST:
      close_conn(c, true);
      break;
    case VSOCK_OP_RW:
      if (c->state == VSOCK_CONNECTED || c->state == VSOCK_CLOSING) on_data(v, c, h, data);
      break;
    case VSOCK_OP_CREDIT_REQUEST:
      send_op(v, c, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
      break;
    case VSOCK_OP_SHUTDOWN:
      c->peer_shutdown |= h->flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
      if (c->peer_shutdown == (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)) {
        send_op(v, c, VSOCK_OP_RST, 0, NULL, 0);  // §5.10.6.5: RST ends it
        close_conn(c, false);
      }
      break;
    default:  // CREDIT_UPDATE: credit taken above; a repeated REQUEST: ignored
      break;
  }
}

static void dispatch(struct virtio_vsock *v, const struct virtio_vsock_hdr *h,
                     const uint8_t *data) {
  v->rx_packets++;
  if (h->dst_cid != v->guest_cid) {
    v->dropped++;
    return;
  }
  if (h->type != VSOCK_TYPE_STREAM) {
    if (h->op != VSOCK_OP_RST) reply_rst(v, h);
    return;
  }
  struct vsock_conn *c = find_conn(v, h);
  if (c) {
    on_conn_packet(v, c, h, data);
  } else if (h->op == VSOCK_OP_REQUEST && (c = find_listener(v, h->dst_port)) != NULL) {
    accept_request(v, c, h);
  } else if (h->op != VSOCK_OP_RST) {
    reply_rst(v, h);
  }
}

static void poll_events(struct virtio_vsock *v) {
  void *token;
  uint32_t len;
  bool reposted = false;
  while ((token = virtq_get(v->event, &len)) != NULL) {
    unsigned i = (unsigned)((uint64_t)token - 1);
    if (len >= sizeof(uint32_t) && v->events[i] == EVENT_TRANSPORT_RESET) {
      // §5.10.6.6: every connection is gone; the CID may have changed.
      v->transport_resets++;
      for (unsigned k = 0; k < VSOCK_MAX_CONNS; k++) {
        if (v->conns[k] && v->conns[k]->state != VSOCK_LISTENING) close_conn(v->conns[k], true);
      }
      v->guest_cid = virtio_cfg_read64(v->dev, CFG_GUEST_CID);
    }
    reposted |= post_event(v, i);
  }
  if (reposted) virtq_kick(v->event);
}

void vsock_poll(struct virtio_vsock *v) {
  void *token;
  uint32_t len;
  bool reposted = false;
  while ((token = virtq_get(v->rx, &len)) != NULL) {
    unsigned i = (unsigned)((uint64_t)token - 1);
    struct virtio_vsock_hdr *h = rx_hdr(v, i);
    if (len >= sizeof(*h) && h->len <= len - sizeof(*h) && h->len <= DATA_SLOT) {
      dispatch(v, h, rx_data(v, i));
    } else {
      v->dropped++;
    }
    reposted |= post_rx(v, i);
  }
  if (reposted) virtq_kick(v->rx);
  reclaim_tx(v);
  poll_events(v);
}

void vsock_wait(struct virtio_vsock *v, uint64_t us) {
  virtio_wait_any(v->dev, VIRTIO_IRQ, us);
  vsock_poll(v);
}

// Polls until the connection leaves |state| or the deadline passes.
static void wait_while(struct virtio_vsock *v, struct vsock_conn *c, enum vsock_state state,
                       uint64_t deadline) {
  vsock_poll(v);
  while (c->state == state && !time_passed(deadline)) vsock_wait(v, time_left_us(deadline));
}

static void attach(struct virtio_vsock *v, struct vsock_conn *c, uint32_t local_port) {
  uint8_t *buf = c->rx_data;
  memset(c, 0, sizeof(*c));
  c->rx_data = buf ? buf : heap_alloc(VSOCK_BUF_ALLOC, 4096);
  c->local_port = local_port;
  for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
    if (v->conns[i] == c) return;
  }
  for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
    if (v->conns[i] == NULL || v->conns[i]->state == VSOCK_CLOSED) {
      v->conns[i] = c;
      return;
    }
  }
}

const char *vsock_connect(struct virtio_vsock *v, struct vsock_conn *c, uint32_t local_port,
                          uint64_t cid, uint32_t port, uint64_t deadline) {
  attach(v, c, local_port);
  c->peer_cid = cid;
  c->peer_port = port;
  c->state = VSOCK_CONNECTING;
  if (!send_op(v, c, VSOCK_OP_REQUEST, 0, NULL, 0)) return "tx queue stuck";
  wait_while(v, c, VSOCK_CONNECTING, deadline);
  if (c->state == VSOCK_CONNECTED) return NULL;
  if (c->state == VSOCK_CONNECTING) {
    send_op(v, c, VSOCK_OP_RST, 0, NULL, 0);
    close_conn(c, true);
    return "no RESPONSE to REQUEST";
  }
  return "connection refused (RST)";
}

void vsock_listen(struct virtio_vsock *v, struct vsock_conn *c, uint32_t port) {
  attach(v, c, port);
  c->state = VSOCK_LISTENING;
}

const char *vsock_accept(struct virtio_vsock *v, struct vsock_conn *c, uint64_t deadline) {
  wait_while(v, c, VSOCK_LISTENING, deadline);
  if (c->state == VSOCK_CONNECTED) return NULL;
  if (c->state == VSOCK_LISTENING) return "no REQUEST";
  return "connection reset right after accept";
}

static uint32_t peer_space(const struct vsock_conn *c) {
  uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
  return c->peer_buf_alloc > in_flight ? c->peer_buf_alloc - in_flight : 0;
}

const char *vsock_send(struct virtio_vsock *v, struct vsock_conn *c, const void *data, uint32_t len,
                       uint64_t deadline) {
  const uint8_t *p = data;
  bool asked = false;
  while (len > 0) {
    vsock_poll(v);
    if (c->state != VSOCK_CONNECTED) return c->reset ? "reset by peer" : "not connected";
    if (c->peer_shutdown & VSOCK_SHUTDOWN_RCV) return "peer shut down receiving";
    uint32_t n = peer_space(c);
    if (n == 0) {  // no credit: ask once, then wait for an update
      if (!asked && !send_op(v, c, VSOCK_OP_CREDIT_REQUEST, 0, NULL, 0)) return "tx queue stuck";
      asked = true;
      if (time_passed(deadline)) return "no credit from the peer";
      vsock_wait(v, time_left_us(deadline));
      continue;
    }
    if (n > len) n = len;
    if (n > DATA_SLOT) n = DATA_SLOT;
    if (!send_op(v, c, VSOCK_OP_RW, 0, p, n)) return "tx queue stuck";
    c->tx_cnt += n;
    p += n;
    len -= n;
    asked = false;
  }
  return NULL;
}

const char *vsock_recv(struct virtio_vsock *v, struct vsock_conn *c, void *buf, uint32_t len,
                       uint64_t deadline) {
  vsock_poll(v);
  while (c->rx_len < len) {
    if (c->state != VSOCK_CONNECTED && c->state != VSOCK_CLOSING) {
      return c->reset ? "reset by peer before all data arrived" : "closed before all data arrived";
    }
    if (c->peer_shutdown & VSOCK_SHUTDOWN_SEND) return "peer shut down sending";
    if (time_passed(deadline)) return "timed out";
    vsock_wait(v, time_left_us(deadline));
  }
  memcpy(buf, c->rx_data, len);
  memmove(c->rx_data, c->rx_data + len, c->rx_len - len);
  c->rx_len -= len;
  c->fwd_cnt += len;
  // Tell the peer about freed space before it could run dry.
  if (c->state == VSOCK_CONNECTED && c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_BUF_ALLOC / 2) {
    send_op(v, c, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
  }
  return NULL;
}

const char *vsock_close(struct virtio_vsock *v, struct vsock_conn *c, uint64_t deadline) {
  vsock_poll(v);
  if (c->state == VSOCK_CLOSED) return NULL;  // the peer closed first (we sent RST)
  if (c->state != VSOCK_CONNECTED) {
    close_conn(c, false);
    return NULL;
  }
  c->state = VSOCK_CLOSING;
  if (!send_op(v, c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, NULL, 0)) {
    return "tx queue stuck";
  }
  uint64_t grace = time_deadline_us(CLOSE_GRACE_US);
  if ((int64_t)(grace - deadline) > 0) grace = deadline;
  wait_while(v, c, VSOCK_CLOSING, grace);
  if (c->state == VSOCK_CLOSING) {  // §5.10.6.5: no RST in time, force it
    send_op(v, c, VSOCK_OP_RST, 0, NULL, 0);
    close_conn(c, false);
  }
  return NULL;
}
