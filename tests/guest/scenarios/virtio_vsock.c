// vsock: the first virtio-vsock device, against the host's peer (Hearth's
// unix-socket backend and its test; vsock_peer.py under QEMU).
//   1. guest-initiated: connect to CID 2 port 5678 (REQUEST -> RESPONSE),
//      send "hello-from-guest\n", expect "hello-from-host\n", close
//      (SHUTDOWN, then the peer's RST or our own).
//   2. host-initiated: listen on port 1234, print HEARTH-VSOCK-LISTENING,
//      accept the REQUEST from CID 2 (RESPONSE), expect "ping-from-host\n",
//      reply "pong-from-guest\n", close.
// Credit flow control throughout (virtio/vsock.h). Each step has
// hearth.timeout_ms.
#include <stdint.h>

#include "console/console.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/string.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/vsock.h"

#define HOST_PORT 5678
#define LISTEN_PORT 1234
#define LOCAL_PORT 49152  // first dynamic port (IANA): the guest's side of step 1

static void expect(struct virtio_vsock *v, struct vsock_conn *c, const char *want,
                   const char *step) {
  static char got[64];
  uint32_t len = (uint32_t)strlen(want);
  const char *err = vsock_recv(v, c, got, len, time_deadline_us(virtio_timeout_us()));
  if (err) test_fail("%s: receiving %u bytes: %s (%u bytes there)", step, len, err, c->rx_len);
  if (memcmp(got, want, len) != 0) test_fail("%s: unexpected data", step);
}

static void send_text(struct virtio_vsock *v, struct vsock_conn *c, const char *text,
                      const char *step) {
  const char *err =
      vsock_send(v, c, text, (uint32_t)strlen(text), time_deadline_us(virtio_timeout_us()));
  if (err) test_fail("%s: send: %s", step, err);
}

static void close_conn(struct virtio_vsock *v, struct vsock_conn *c, const char *step) {
  bool peer_first = c->state == VSOCK_CLOSED;
  const char *err = vsock_close(v, c, time_deadline_us(virtio_timeout_us()));
  if (err) test_fail("%s: close: %s", step, err);
  printk("vsock: %s: closed (%s)\n", step,
         peer_first || c->peer_shutdown ? "peer shut down first"
         : c->reset                     ? "peer sent RST"
                                        : "we sent RST");
}

static uint64_t vsock_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_VSOCK, 0);
  if (d == NULL) test_fail("no virtio vsock device");
  static struct virtio_vsock v;
  const char *err = vsock_init(&v, d);
  if (err) test_fail("%s", err);
  printk("vsock: guest_cid=%lu features 0x%lx (offered 0x%lx)\n", v.guest_cid, d->features,
         d->offered);
  if (v.guest_cid <= VSOCK_HOST_CID) test_fail("guest_cid %lu is reserved", v.guest_cid);

  static struct vsock_conn out;
  const char *step = "guest-initiated";
  err = vsock_connect(&v, &out, LOCAL_PORT, VSOCK_HOST_CID, HOST_PORT,
                      time_deadline_us(virtio_timeout_us()));
  if (err) test_fail("%s: connect to %u:%u: %s", step, VSOCK_HOST_CID, HOST_PORT, err);
  printk("vsock: %s: connected %u -> %u:%u, peer buf_alloc %u\n", step, LOCAL_PORT, VSOCK_HOST_CID,
         HOST_PORT, out.peer_buf_alloc);
  send_text(&v, &out, "hello-from-guest\n", step);
  expect(&v, &out, "hello-from-host\n", step);
  close_conn(&v, &out, step);

  static struct vsock_conn in;
  step = "host-initiated";
  vsock_listen(&v, &in, LISTEN_PORT);
  printk("HEARTH-VSOCK-LISTENING\n");
  err = vsock_accept(&v, &in, time_deadline_us(virtio_timeout_us()));
  if (err) test_fail("%s: accept on port %u: %s", step, LISTEN_PORT, err);
  printk("vsock: %s: accepted %lu:%u -> %u, peer buf_alloc %u\n", step, in.peer_cid, in.peer_port,
         LISTEN_PORT, in.peer_buf_alloc);
  if (in.peer_cid != VSOCK_HOST_CID) test_fail("%s: request from CID %lu", step, in.peer_cid);
  expect(&v, &in, "ping-from-host\n", step);
  send_text(&v, &in, "pong-from-guest\n", step);
  close_conn(&v, &in, step);

  printk(
      "vsock: %u packets received, %u sent, %u RST sent, %u dropped, %u transport resets, "
      "%u interrupts\n",
      v.rx_packets, v.tx_packets, v.rsts_sent, v.dropped, v.transport_resets, d->irq_count);
  test_pass();
}

static void vsock(void) { virtio_scenario(vsock_main); }
SCENARIO(vsock, vsock);
