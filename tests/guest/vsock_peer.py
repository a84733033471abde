#!/usr/bin/python3
"""A vhost-user vsock backend that plays the host (CID 2) for the guest's
`vsock` scenario under QEMU, which has no /dev/vhost-vsock here.

  vsock_peer.py SOCKET [GUEST_CID] [TIMEOUT_S]

Listens on the unix SOCKET for QEMU's
  -chardev socket,id=vs,path=SOCKET -device vhost-user-vsock-device,chardev=vs
  -object memory-backend-memfd,id=mem,size=<ram>,share=on -machine memory-backend=mem
serves the rx (0) and tx (1) queues (QEMU keeps the event queue), and runs
the scenario's protocol from the host side, stricter than it needs to be:
  1. accepts the guest's REQUEST to port 5678 with buf_alloc 8, so the
     guest must split "hello-from-guest\\n" and ask for credit
     (CREDIT_REQUEST); checks the guest never exceeds the credit; sends a
     CREDIT_REQUEST of its own (the guest must answer CREDIT_UPDATE), answers
     "hello-from-host\\n", answers the guest's SHUTDOWN with RST and checks
     that the SHUTDOWN's fwd_cnt counts the 16 bytes the guest read;
  2. connects to the guest's port 1234 (retrying while the guest still
     answers RST), sends "ping-from-host\\n", expects "pong-from-guest\\n",
     then sends SHUTDOWN and expects the guest's RST (or answers the guest's
     own SHUTDOWN with RST).
Prints "vsock_peer: ready" when listening, "vsock_peer: PASS" or
"vsock_peer: FAIL <why>" at the end; exit status 0 only on PASS.

Offers VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC
and VIRTIO_VSOCK_F_STREAM; protocol features: CONFIG only (vhost-user.rst).
Standard library only (Debian's /usr/bin/python3).
"""
import mmap
import os
import select
import socket
import struct
import sys
import time

# vhost-user requests (docs/interop/vhost-user.rst).
GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_LOG_BASE, SET_LOG_FD, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 6, 7, 8, 9, 10
GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 11, 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
GET_CONFIG, SET_CONFIG = 24, 25
REPLY_FLAG, VERSION = 0x4, 0x1
F_PROTOCOL_FEATURES = 1 << 30
PROTOCOL_F_CONFIG = 1 << 9
FEATURES = (1 << 32) | (1 << 29) | (1 << 28) | (1 << 0) | F_PROTOCOL_FEATURES
DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4

# vsock (virtio 1.2 5.10.6).
HDR = struct.Struct("<QQIIIHHIII")  # 44 bytes
OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW = 1, 2, 3, 4, 5
OP_CREDIT_UPDATE, OP_CREDIT_REQUEST = 6, 7
HOST_CID, HOST_PORT, GUEST_PORT, HOST_SRC_PORT = 2, 5678, 1234, 40000
SMALL_CREDIT = 8
BIG_CREDIT = 256 * 1024


class Fail(Exception):
    pass


class Memory:
    def __init__(self):
        self.regions = []  # (gpa, size, uva, mmap, offset)

    def set_table(self, payload, fds):
        for _, _, _, m, _ in self.regions:
            m.close()
        self.regions = []
        n = struct.unpack_from("<I", payload)[0]
        for i in range(n):
            gpa, size, uva, off = struct.unpack_from("<QQQQ", payload, 8 + 32 * i)
            m = mmap.mmap(fds[i], size + off, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.close(fds[i])
            self.regions.append((gpa, size, uva, m, off))

    def _find(self, addr, length, by_uva):
        for gpa, size, uva, m, off in self.regions:
            base = uva if by_uva else gpa
            if base <= addr and addr + length <= base + size:
                return m, off + addr - base
        raise Fail("address 0x%x+%d outside guest memory" % (addr, length))

    def read(self, gpa, length):
        m, o = self._find(gpa, length, False)
        return m[o:o + length]

    def write(self, gpa, data):
        m, o = self._find(gpa, len(data), False)
        m[o:o + len(data)] = data

    def uva_to_gpa(self, uva):
        for gpa, size, base, _, _ in self.regions:
            if base <= uva < base + size:
                return gpa + uva - base
        raise Fail("ring address 0x%x outside guest memory" % uva)


class Queue:
    """A split virtqueue, device side (virtio 1.2 2.7)."""

    def __init__(self, mem):
        self.mem = mem
        self.num = 0
        self.desc = self.avail = self.used = None
        self.last_avail = 0
        self.used_idx = 0
        self.kick = self.call = None
        self.enabled = False
        self.event_idx = False

    def ready(self):
        return self.enabled and self.desc is not None and self.num > 0

    def _u16(self, addr):
        return struct.unpack("<H", self.mem.read(addr, 2))[0]

    def pop(self):
        """The next available chain as ([(addr, len, writable)], head) or None."""
        if self._u16(self.avail + 2) == self.last_avail:
            return None
        head = self._u16(self.avail + 4 + 2 * (self.last_avail % self.num))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if self.event_idx:  # avail_event: kick me for the next one
            self.mem.write(self.used + 4 + 8 * self.num, struct.pack("<H", self.last_avail))
        bufs, table, count, i = [], self.desc, self.num, head
        for _ in range(2 * self.num + 2):
            addr, length, flags, nxt = struct.unpack("<QIHH", self.mem.read(table + 16 * i, 16))
            if flags & DESC_F_INDIRECT:
                table, count, i = addr, length // 16, 0
                continue
            bufs.append((addr, length, bool(flags & DESC_F_WRITE)))
            if not flags & DESC_F_NEXT:
                return bufs, head
            if nxt >= count:
                raise Fail("descriptor next %d out of range" % nxt)
            i = nxt
        raise Fail("descriptor chain loops")

    def push(self, head, length):
        old = self.used_idx
        self.mem.write(self.used + 4 + 8 * (old % self.num), struct.pack("<II", head, length))
        self.used_idx = (old + 1) & 0xFFFF
        self.mem.write(self.used + 2, struct.pack("<H", self.used_idx))
        notify = True
        if self.event_idx:  # vring_need_event(used_event, new, old)
            event = self._u16(self.avail + 4 + 2 * self.num)
            notify = (self.used_idx - event - 1) & 0xFFFF < (self.used_idx - old) & 0xFFFF
        if notify and self.call is not None:
            os.write(self.call, struct.pack("<Q", 1))


class Peer:
    """The host's half of the vsock scenario."""

    def __init__(self, guest_cid):
        self.guest_cid = guest_cid
        self.out = []  # packets for the guest: (hdr fields, payload)
        self.phase = 1
        self.conn = None  # dict: ports, credit bookkeeping, received data
        self.next_request = 0.0
        self.result = None
        self.log = []

    def note(self, text):
        self.log.append(text)
        print("vsock_peer: " + text, flush=True)

    def send(self, c, op, payload=b"", flags=0):
        if op == OP_RW:
            space = c["guest_buf_alloc"] - (c["tx_cnt"] - c["guest_fwd_cnt"])
            if len(payload) > space:
                raise Fail("host would exceed the guest's credit")
            c["tx_cnt"] += len(payload)
        c["fwd_sent"] = c["fwd_cnt"]
        self.out.append(((HOST_CID, self.guest_cid, c["host_port"], c["guest_port"], len(payload),
                          1, op, flags, c["buf_alloc"], c["fwd_cnt"]), payload))

    def rst_reply(self, h):
        self.out.append(((HOST_CID, h[0], h[3], h[2], 0, 1, OP_RST, 0, 0, 0), b""))

    def tick(self):
        """Timers: phase 2 connects (again) until the guest listens."""
        if self.phase == 2 and self.conn is None and time.time() >= self.next_request:
            self.conn = dict(host_port=HOST_SRC_PORT, guest_port=GUEST_PORT, buf_alloc=BIG_CREDIT,
                             fwd_cnt=0, fwd_sent=0, rx=b"", rx_total=0, tx_cnt=0,
                             guest_buf_alloc=0, guest_fwd_cnt=0, state="connecting")
            self.send(self.conn, OP_REQUEST)

    def on_packet(self, hdr, payload):
        (src_cid, dst_cid, src_port, dst_port, length, typ, op, flags, buf_alloc,
         fwd_cnt) = hdr
        if dst_cid != HOST_CID or src_cid != self.guest_cid:
            raise Fail("packet %d:%d -> %d:%d has wrong CIDs" % (src_cid, src_port, dst_cid,
                                                                  dst_port))
        if typ != 1:
            raise Fail("packet type %d, want STREAM" % typ)
        if buf_alloc != 65536 and op != OP_RST:
            raise Fail("guest advertises buf_alloc %d, want 65536" % buf_alloc)
        c = self.conn
        if c is None or (dst_port, src_port) != (c["host_port"], c["guest_port"]):
            if self.phase == 1 and op == OP_REQUEST and dst_port == HOST_PORT:
                self.conn = c = dict(host_port=HOST_PORT, guest_port=src_port,
                                     buf_alloc=SMALL_CREDIT, fwd_cnt=0, fwd_sent=0, rx=b"",
                                     rx_total=0, tx_cnt=0, guest_buf_alloc=buf_alloc,
                                     guest_fwd_cnt=fwd_cnt, state="connected",
                                     credit_requests=0, credit_updates=0)
                self.note("guest connected from port %d (credit %d)" % (src_port, SMALL_CREDIT))
                self.send(c, OP_RESPONSE)
            elif op != OP_RST:
                self.rst_reply(hdr)
            return
        c["guest_buf_alloc"], c["guest_fwd_cnt"] = buf_alloc, fwd_cnt
        if self.phase == 1:
            self.phase1(c, op, flags, fwd_cnt, payload)
        else:
            self.phase2(c, op, flags, payload)

    def receive(self, c, payload):
        c["rx_total"] += len(payload)
        if c["rx_total"] - c["fwd_sent"] > c["buf_alloc"]:
            raise Fail("guest sent %d bytes with only %d of credit" %
                       (c["rx_total"] - c["fwd_sent"], c["buf_alloc"]))
        c["rx"] += payload
        c["fwd_cnt"] += len(payload)  # consumed at once

    def phase1(self, c, op, flags, fwd_cnt, payload):
        if op == OP_RW:
            self.receive(c, payload)
            if c["rx"] == b"hello-from-guest\n":
                self.note("got hello-from-guest in pieces; %d credit request(s)" %
                          c["credit_requests"])
                if c["credit_requests"] == 0:
                    raise Fail("guest never asked for credit")
                # The CREDIT_REQUEST goes first: the rx queue delivers in
                # order, so the guest has answered it before it sees the
                # reply it waits for, and its CREDIT_UPDATE precedes its
                # SHUTDOWN on the tx queue (the other order races the
                # guest's close when rx buffers are short).
                self.send(c, OP_CREDIT_REQUEST)
                self.send(c, OP_RW, b"hello-from-host\n")
        elif op == OP_CREDIT_REQUEST:
            c["credit_requests"] += 1
            self.send(c, OP_CREDIT_UPDATE)
        elif op == OP_CREDIT_UPDATE:
            c["credit_updates"] += 1
        elif op == OP_SHUTDOWN:
            if c["credit_updates"] == 0:
                raise Fail("guest did not answer CREDIT_REQUEST with CREDIT_UPDATE")
            if fwd_cnt != 16:
                raise Fail("SHUTDOWN carries fwd_cnt %d, want 16" % fwd_cnt)
            self.note("guest shut down (flags %d, fwd_cnt %d); RST" % (flags, fwd_cnt))
            self.send(c, OP_RST)
            self.phase, self.conn = 2, None
        elif op == OP_RST:
            raise Fail("guest reset the connection in phase 1")
        else:
            raise Fail("unexpected op %d in phase 1" % op)

    def phase2(self, c, op, flags, payload):
        if c["state"] == "connecting":
            if op == OP_RST:  # not listening yet
                self.conn, self.next_request = None, time.time() + 0.05
                return
            if op != OP_RESPONSE:
                raise Fail("op %d in answer to REQUEST" % op)
            c["state"] = "connected"
            self.note("connected to guest port %d" % GUEST_PORT)
            self.send(c, OP_RW, b"ping-from-host\n")
        elif op == OP_RW:
            self.receive(c, payload)
            if c["rx"] == b"pong-from-guest\n":
                self.note("got pong-from-guest; SHUTDOWN")
                self.send(c, OP_SHUTDOWN, flags=3)
                c["state"] = "closing"
        elif op in (OP_SHUTDOWN, OP_RST):
            if c["rx"] != b"pong-from-guest\n":
                raise Fail("guest closed after %r" % c["rx"])
            if op == OP_SHUTDOWN:
                self.send(c, OP_RST)
            self.note("guest %s; done" % ("shut down, RST sent" if op == OP_SHUTDOWN
                                          else "sent RST"))
            self.result = "PASS"
        elif op == OP_CREDIT_REQUEST:
            self.send(c, OP_CREDIT_UPDATE)
        elif op != OP_CREDIT_UPDATE:
            raise Fail("unexpected op %d in phase 2" % op)


class Backend:
    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.mem = Memory()
        self.vqs = [Queue(self.mem), Queue(self.mem)]  # rx, tx
        self.features = 0

    def recv_msg(self):
        data, fds, _, _ = socket.recv_fds(self.sock, 12, 8)
        if not data:
            return None
        while len(data) < 12:
            data += self.sock.recv(12 - len(data))
        req, flags, size = struct.unpack("<III", data)
        payload = b""
        while len(payload) < size:
            chunk = self.sock.recv(size - len(payload))
            if not chunk:
                return None
            payload += chunk
        return req, flags, payload, list(fds)

    def reply(self, req, payload):
        self.sock.sendall(struct.pack("<III", req, VERSION | REPLY_FLAG, len(payload)) + payload)

    def handle(self, req, payload, fds):
        u64 = lambda: struct.unpack_from("<Q", payload)[0]
        if req == GET_FEATURES:
            self.reply(req, struct.pack("<Q", FEATURES))
        elif req == SET_FEATURES:
            self.features = u64()
            for q in self.vqs:
                q.event_idx = bool(self.features & (1 << 29))
        elif req == GET_PROTOCOL_FEATURES:
            self.reply(req, struct.pack("<Q", PROTOCOL_F_CONFIG))
        elif req == GET_QUEUE_NUM:
            self.reply(req, struct.pack("<Q", 2))
        elif req == GET_CONFIG:
            offset, size, flags = struct.unpack_from("<III", payload)
            cfg = struct.pack("<Q", self.peer.guest_cid).ljust(offset + size, b"\0")
            self.reply(req, struct.pack("<III", offset, size, flags) + cfg[offset:offset + size])
        elif req == SET_MEM_TABLE:
            self.mem.set_table(payload, fds)
            fds = []
        elif req == SET_VRING_NUM:
            i, num = struct.unpack_from("<II", payload)
            self.vqs[i].num = num
        elif req == SET_VRING_ADDR:
            i, _, desc, used, avail, _ = struct.unpack_from("<IIQQQQ", payload)
            q = self.vqs[i]
            q.desc, q.used, q.avail = (self.mem.uva_to_gpa(a) for a in (desc, used, avail))
        elif req == SET_VRING_BASE:
            i, num = struct.unpack_from("<II", payload)
            self.vqs[i].last_avail = self.vqs[i].used_idx = num
        elif req == GET_VRING_BASE:
            i = struct.unpack_from("<I", payload)[0]
            q = self.vqs[i]
            q.enabled = False
            self.reply(req, struct.pack("<II", i, q.last_avail))
        elif req in (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR):
            v = u64()
            q = self.vqs[v & 0xFF]
            fd = None if v & 0x100 or not fds else fds.pop(0)
            if req == SET_VRING_KICK:
                q.kick = fd
                if not self.features & F_PROTOCOL_FEATURES:
                    q.enabled = True
            elif req == SET_VRING_CALL:
                q.call = fd
            elif fd is not None:
                os.close(fd)
        elif req == SET_VRING_ENABLE:
            i, on = struct.unpack_from("<II", payload)
            self.vqs[i].enabled = bool(on)
        elif req in (SET_OWNER, RESET_OWNER, SET_PROTOCOL_FEATURES, SET_CONFIG):
            pass
        else:
            raise Fail("unsupported vhost-user request %d" % req)
        for fd in fds:
            os.close(fd)

    def process(self):
        rx, tx = self.vqs
        while tx.ready():
            chain = tx.pop()
            if chain is None:
                break
            bufs, head = chain
            data = b"".join(self.mem.read(a, n) for a, n, w in bufs if not w)
            if any(w for _, _, w in bufs) or len(data) < HDR.size:
                raise Fail("malformed tx packet")
            hdr = HDR.unpack_from(data)
            if hdr[4] != len(data) - HDR.size:
                raise Fail("tx header len %d, payload %d" % (hdr[4], len(data) - HDR.size))
            tx.push(head, 0)
            self.peer.on_packet(hdr, data[HDR.size:])
        self.peer.tick()
        while rx.ready() and self.peer.out:
            chain = rx.pop()
            if chain is None:
                break
            bufs, head = chain
            fields, payload = self.peer.out.pop(0)
            data = HDR.pack(*fields) + payload
            room = sum(n for _, n, w in bufs if w)
            if room < len(data):
                raise Fail("rx buffer of %d bytes for a %d-byte packet" % (room, len(data)))
            done = 0
            for a, n, w in bufs:
                if w and done < len(data):
                    part = data[done:done + n]
                    self.mem.write(a, part)
                    done += len(part)
            rx.push(head, len(data))

    def run(self, deadline):
        """Serves until the protocol passed and the guest had 2 s to finish
        (or QEMU went away after that)."""
        linger = None
        while linger is None or time.time() < linger:
            if linger is None and time.time() > deadline:
                raise Fail("timed out (%s)" % "; ".join(self.peer.log[-2:]))
            fds = [self.sock] + [q.kick for q in self.vqs if q.kick is not None]
            ready, _, _ = select.select(fds, [], [], 0.05)
            for fd in ready:
                if fd is self.sock:
                    msg = self.recv_msg()
                    if msg is None:
                        if self.peer.result is None:
                            raise Fail("QEMU disconnected")
                        return
                    self.handle(msg[0], msg[2], msg[3])
                else:
                    os.read(fd, 8)
            self.process()
            if self.peer.result is not None and linger is None:
                linger = time.time() + 2


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    path = argv[1]
    guest_cid = int(argv[2]) if len(argv) > 2 else 3
    timeout = float(argv[3]) if len(argv) > 3 else 30
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    print("vsock_peer: ready", flush=True)
    server.settimeout(timeout)
    try:
        sock, _ = server.accept()
        Backend(sock, Peer(guest_cid)).run(time.time() + timeout)
    except (Fail, socket.timeout, OSError) as e:
        print("vsock_peer: FAIL %s" % e, flush=True)
        return 1
    print("vsock_peer: PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
