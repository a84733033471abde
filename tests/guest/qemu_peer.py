#!/usr/bin/python3
"""Host side of the test guest's QEMU device scenarios (qemu_virtio_test.sh).

  qemu_peer.py qmp SOCKET COMMAND [ARGS_JSON] ...
      Connects to QEMU's QMP socket (waits for it to appear), negotiates
      capabilities and runs the commands in order, e.g.
        qmp /tmp/q.sock balloon '{"value": 132120576}' cont
      Exits non-zero if a command returns an error.

  qemu_peer.py net-responder IFNAME [TIMEOUT_S]
      The peer of the guest's `net` scenario on a tap device (run it in the
      tap's network namespace). On an AF_PACKET socket for ethertype 0x88b5:
      answers "HEARTH-NET-TX <i>" with "HEARTH-NET-RX <i>" to the sender's
      MAC, and "HEARTH-NET-BURST-PLEASE" with 64 frames "HEARTH-NET-BURST <i>"
      sent back to back. Prints "ready" once bound; exits 0 after the burst
      was sent (or 1 at the timeout).

Only the standard library: runs with Debian's /usr/bin/python3.
"""
import json
import os
import socket
import struct
import sys
import time

ETHERTYPE = 0x88B5
HOST_MAC = bytes.fromhex("060000000002")
PACKET_OUTGOING = 4


def qmp(path, commands):
    deadline = time.time() + 10
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit("qmp: %s did not appear" % path)
        time.sleep(0.01)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting

    def run(name, args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                sys.exit("qmp: %s: %s" % (name, reply["error"]))
            return reply

    run("qmp_capabilities", None)
    i = 0
    while i < len(commands):
        name, args = commands[i], None
        if i + 1 < len(commands) and commands[i + 1].startswith("{"):
            args = json.loads(commands[i + 1])
            i += 1
        run(name, args)
        i += 1


def frame(dst, text):
    payload = text.encode().ljust(46, b"\0")
    return dst + HOST_MAC + struct.pack("!H", ETHERTYPE) + payload


def net_responder(ifname, timeout_s):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.bind((ifname, ETHERTYPE))
    s.settimeout(0.5)
    print("ready", flush=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING or len(data) < 14:
            continue
        src = data[6:12]
        text = data[14:].rstrip(b"\0").decode(errors="replace")
        if text.startswith("HEARTH-NET-TX "):
            s.send(frame(src, "HEARTH-NET-RX " + text[len("HEARTH-NET-TX "):]))
        elif text == "HEARTH-NET-BURST-PLEASE":
            for i in range(64):
                s.send(frame(src, "HEARTH-NET-BURST %d" % i))
            print("burst sent", flush=True)
            return 0
    print("timed out", flush=True)
    return 1


def main(argv):
    if len(argv) >= 3 and argv[1] == "qmp":
        qmp(argv[2], argv[3:])
        return 0
    if len(argv) >= 3 and argv[1] == "net-responder":
        return net_responder(argv[2], float(argv[3]) if len(argv) > 3 else 30)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
