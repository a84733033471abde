// net: the first virtio-net device against a host-side responder
// (qemu_peer.py for QEMU; Hearth's host test for Hearth).
//   1. 4 frames to ff:ff:ff:ff:ff:ff from the device's MAC, ethertype
//      0x88b5, payload "HEARTH-NET-TX <i>"; the host answers each with
//      "HEARTH-NET-RX <i>" to the guest's MAC.
//   2. one frame "HEARTH-NET-BURST-PLEASE"; the host answers with 64 frames
//      "HEARTH-NET-BURST <i>", back to back: more than the 8 receive buffers
//      the guest keeps posted, so the device must resume when they are
//      refilled.
// PASS when all 4 echoes and all 64 burst frames (any order) arrived within
// hearth.timeout_ms. Frames the host has not answered within a second are
// sent again (the host may start its responder late); other traffic (IPv6
// neighbour discovery on the tap, ...) is counted and ignored.
#include <stdint.h>

#include "console/console.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/format.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/net.h"

#define ETHERTYPE_HEARTH 0x88b5
#define NUM_ECHOES 4
#define NUM_BURST 64
#define RESEND_US 1000000

struct net_progress {
  const uint8_t *mac;
  uint32_t echoes;  // bit i: "HEARTH-NET-RX <i>" seen
  uint64_t burst;   // bit i: "HEARTH-NET-BURST <i>" seen
  uint32_t others;  // frames for someone else or of another kind
  uint32_t duplicates;
};

// Matches "<prefix><decimal>" (then zero padding) at the start of payload.
static bool parse_tagged(const uint8_t *p, uint32_t len, const char *prefix, uint32_t *out) {
  uint32_t plen = (uint32_t)strlen(prefix), v = 0, i = plen;
  if (len <= plen || memcmp(p, prefix, plen) != 0) return false;
  for (; i < len && p[i] >= '0' && p[i] <= '9' && i < plen + 4; i++) v = v * 10 + (p[i] - '0');
  if (i == plen || (i < len && p[i] != 0)) return false;
  *out = v;
  return true;
}

static void on_frame(const uint8_t *f, uint32_t len, void *ctx) {
  struct net_progress *p = ctx;
  uint32_t i;
  if (len < ETH_HLEN || memcmp(f, p->mac, ETH_ALEN) != 0 ||
      (f[12] << 8 | f[13]) != ETHERTYPE_HEARTH) {
    p->others++;
    return;
  }
  const uint8_t *payload = f + ETH_HLEN;
  uint32_t plen = len - ETH_HLEN;
  if (parse_tagged(payload, plen, "HEARTH-NET-RX ", &i) && i < NUM_ECHOES) {
    if (p->echoes & (1u << i)) p->duplicates++;
    p->echoes |= 1u << i;
  } else if (parse_tagged(payload, plen, "HEARTH-NET-BURST ", &i) && i < NUM_BURST) {
    if (p->burst & (1ull << i)) p->duplicates++;
    p->burst |= 1ull << i;
  } else {
    p->others++;
  }
}

static void send_tagged(struct virtio_net *n, const char *text) {
  static uint8_t frame[64];  // minimum Ethernet frame (without FCS): 60 bytes
  memset(frame, 0, sizeof(frame));
  memset(frame, 0xff, ETH_ALEN);
  memcpy(frame + ETH_ALEN, n->mac, ETH_ALEN);
  frame[12] = ETHERTYPE_HEARTH >> 8;
  frame[13] = ETHERTYPE_HEARTH & 0xff;
  memcpy(frame + ETH_HLEN, text, strlen(text));
  if (!net_send(n, frame, 60, true)) test_fail("tx queue full");
}

static void send_missing_echoes(struct virtio_net *n, uint32_t echoes) {
  char text[32];
  for (int i = 0; i < NUM_ECHOES; i++) {
    if (echoes & (1u << i)) continue;
    format(text, sizeof(text), "HEARTH-NET-TX %d", i);
    send_tagged(n, text);
  }
}

// Receives until done(p) or the deadline; calls resend() after every second
// without any progress.
static bool receive_until(struct virtio_net *n, struct net_progress *p,
                          bool (*done)(struct net_progress *),
                          void (*resend)(struct virtio_net *, struct net_progress *),
                          uint64_t deadline) {
  uint64_t next_resend = time_deadline_us(RESEND_US);
  while (!done(p)) {
    if (time_passed(deadline)) return false;
    if (net_poll_rx(n, on_frame, p) > 0) continue;
    net_tx_reclaim(n);
    if (time_passed(next_resend)) {
      resend(n, p);
      next_resend = time_deadline_us(RESEND_US);
    }
    uint64_t wait = time_left_us(deadline);
    if (wait > RESEND_US) wait = RESEND_US;
    virtio_wait_any(n->dev, VIRTIO_IRQ, wait);
  }
  return true;
}

static bool echoes_done(struct net_progress *p) { return p->echoes == (1u << NUM_ECHOES) - 1; }
static bool burst_done(struct net_progress *p) { return p->burst == ~0ull; }
static void resend_echoes(struct virtio_net *n, struct net_progress *p) {
  send_missing_echoes(n, p->echoes);
}
static void resend_burst(struct virtio_net *n, struct net_progress *p) {
  if (p->burst == 0) send_tagged(n, "HEARTH-NET-BURST-PLEASE");
}

static uint64_t net_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_NET, 0);
  if (d == NULL) test_fail("no virtio net device");
  static struct virtio_net n;
  const char *err = net_init(&n, d, 16);
  if (err) test_fail("%s", err);
  const uint8_t *m = n.mac;
  printk("net: mac %02x:%02x:%02x:%02x:%02x:%02x%s features 0x%lx (offered 0x%lx)\n", m[0], m[1],
         m[2], m[3], m[4], m[5], n.has_mac ? "" : " (no VIRTIO_NET_F_MAC)", d->features,
         d->offered);
  uint64_t t0 = time_us();
  uint64_t deadline = time_deadline_us(virtio_timeout_us());
  static struct net_progress p;
  p.mac = n.mac;
  send_missing_echoes(&n, 0);
  if (!receive_until(&n, &p, echoes_done, resend_echoes, deadline)) {
    test_fail("echoes 0x%x of 0xf within %lu ms", p.echoes, virtio_timeout_us() / 1000);
  }
  uint64_t t1 = time_us();
  send_tagged(&n, "HEARTH-NET-BURST-PLEASE");
  if (!receive_until(&n, &p, burst_done, resend_burst, deadline)) {
    test_fail("burst frames 0x%016lx of all 64 within %lu ms", p.burst, virtio_timeout_us() / 1000);
  }
  uint64_t t2 = time_us();
  printk(
      "net: 4 echoes in %lu us, 64 burst frames in %lu us; %lu rx, %lu tx frames, "
      "%u ignored, %u duplicates, %u interrupts\n",
      t1 - t0, t2 - t1, n.rx_frames, n.tx_frames, p.others, p.duplicates, d->irq_count);
  test_pass();
}

static void net(void) { virtio_scenario(net_main); }
SCENARIO(net, net);
