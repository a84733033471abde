#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/: a few small, valid inputs
per fuzz target in the input format its source file describes, so that both
fuzz_driver (normal builds) and libFuzzer start from meaningful cases.

    tests/fuzz/make_corpus.py     (rewrites corpus/*/seed-*; keep in sync
                                   with the targets' input formats)
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

VIRTQ_NEXT, VIRTQ_WRITE, VIRTQ_INDIRECT = 1, 2, 4


def write(target, name, data):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


def desc(addr, length, flags, next_index):
    return struct.pack("<QIHH", addr, length, flags, next_index)


def ram_with(size, pieces):
    ram = bytearray(size)
    for address, data in pieces:
        ram[address:address + len(data)] = data
    return bytes(ram)


# virtqueue_fuzz: flags, size code, desc, avail, used, next_avail,
# next_used, RAM image. Rings at 0x0 / 0x100 / 0x200, buffers from 0x400.
def virtqueue():
    def header(flags, size_code, next_avail=0, next_used=0):
        return struct.pack("<BBHHHHH", flags, size_code, 0x0, 0x100, 0x200,
                           next_avail, next_used)

    chain = desc(0x400, 16, VIRTQ_NEXT, 1) + desc(0x410, 32, VIRTQ_WRITE | VIRTQ_NEXT, 2) + \
        desc(0x430, 1, VIRTQ_WRITE, 0)
    avail = struct.pack("<HHH", 0, 1, 0)
    write("virtqueue_fuzz", "simple-chain",
          header(0, 4) + ram_with(0x440, [(0, chain), (0x100, avail)]))
    # Two chains, EVENT_IDX, used_event set, indices about to wrap.
    two = desc(0x400, 8, 0, 0) + desc(0x408, 8, VIRTQ_WRITE, 0)
    avail = struct.pack("<HHHH", 0, 1, 0, 1) + b"\0" * 28 + struct.pack("<H", 0)
    write("virtqueue_fuzz", "event-idx-wrap",
          header(1, 4, 0xffff, 0xffff) + ram_with(0x440, [(0, two), (0x100, avail)]))
    # An indirect table of three entries at 0x300, Undo on the first chain.
    table = desc(0x400, 16, VIRTQ_NEXT, 1) + desc(0x410, 16, VIRTQ_NEXT, 2) + \
        desc(0x420, 4, VIRTQ_WRITE, 0)
    head = desc(0x300, 48, VIRTQ_INDIRECT, 0)
    avail = struct.pack("<HHH", 0, 1, 0)
    write("virtqueue_fuzz", "indirect",
          header(2 | 4, 3) + ram_with(0x440, [(0, head), (0x100, avail), (0x300, table)]))


# block_request_fuzz: disk sectors u16, flags u8, count u8, per buffer
# {length u16, writable u8}, then the readable bytes.
def block():
    def request(flags, buffers, readable, sectors=128):
        out = struct.pack("<HBB", sectors, flags, len(buffers) - 1)
        for length, writable in buffers:
            out += struct.pack("<HB", length, writable)
        return out + readable

    def header(kind, sector):
        return struct.pack("<IIQ", kind, 0, sector)

    write("block_request_fuzz", "in", request(0, [(16, 0), (1024, 1), (1, 1)], header(0, 2)))
    write("block_request_fuzz", "out",
          request(0, [(16 + 512, 0), (1, 1)], header(1, 4) + b"D" * 512))
    write("block_request_fuzz", "flush", request(0, [(16, 0), (1, 1)], header(4, 0)))
    write("block_request_fuzz", "get-id", request(0, [(16, 0), (20, 1), (1, 1)], header(8, 0)))
    write("block_request_fuzz", "read-only-indirect",
          request(1 | 2, [(8, 0), (8 + 512, 0), (1, 1)], header(1, 127)[:8] +
                  header(1, 127)[8:] + b"x" * 512))


# vsock_fuzz: operations (see vsock_fuzz.cc).
def vsock():
    def tx(op, guest_port=1, host_port=2, payload=b"", length=None, buf_alloc=65536,
           fwd_cnt=0, flags=0, split=20):
        length = len(payload) if length is None else length
        return bytes([0, 1, 1, guest_port, host_port]) + struct.pack(
            "<HBBBIIH", length, 1, op, flags, buf_alloc, fwd_cnt, len(payload)) + \
            payload + bytes([split])

    post_rx = bytes([1, 3]) + struct.pack("<H", 44 + 4096)
    loop = bytes([4])
    connect = post_rx + tx(1)  # REQUEST -> RESPONSE
    write("vsock_fuzz", "connect-and-relay",
          connect + tx(5, payload=b"hello") + bytes([2, 0, 5]) + b"world" + loop +
          tx(6, fwd_cnt=5) + tx(4, flags=3))
    write("vsock_fuzz", "credit",
          connect[:4] + tx(1, buf_alloc=8) + bytes([2, 0, 12]) + b"abcdefghijkl" + loop +
          tx(6, buf_alloc=8, fwd_cnt=8) + bytes([5]))
    write("vsock_fuzz", "refused-and-hangup",
          post_rx + bytes([6]) + tx(1) + bytes([6]) + tx(1, guest_port=2) + bytes([3, 0]) +
          loop + bytes([7, 44]) + struct.pack("<QQIIIHHIII", 3, 2, 1, 2, 0, 1, 5, 0, 65536, 0))


# mmio_transport_fuzz: device u8, then operations (see the source).
def mmio():
    def init(features, queues):
        out = bytes([5]) + struct.pack("<Q", features)
        for size, d, a, u in queues:
            out += struct.pack("<HIII", size, d, a, u)
        return out

    def poke(address, data):
        return bytes([4]) + struct.pack("<IB", address, len(data)) + data

    def reg_write(offset, value):
        return bytes([1]) + struct.pack("<HBQ", offset, 2, value)  # width 4

    def reg_read(offset):
        return bytes([0]) + struct.pack("<HB", offset, 2)

    version1 = 1 << 32
    rng = bytes([0]) + init(version1 | (1 << 29), [(16, 0x1000, 0x2000, 0x3000)]) + \
        poke(0x1000, desc(0x8000, 64, VIRTQ_WRITE, 0)) + \
        poke(0x2000, struct.pack("<HHH", 0, 1, 0)) + bytes([2]) + \
        reg_read(0x60) + reg_write(0x64, 1) + reg_write(0x50, 0) + bytes([2]) + \
        reg_write(0x70, 0) + bytes([2])
    write("mmio_transport_fuzz", "rng", rng)
    pfns = struct.pack("<II", 0x50, 0x51)
    balloon = bytes([1]) + init(version1 | 2, [(8, 0x1000, 0x2000, 0x3000),
                                               (8, 0x4000, 0x5000, 0x6000),
                                               (8, 0x7000, 0x7800, 0x7c00)]) + \
        poke(0x9000, pfns) + poke(0x1000, desc(0x9000, 8, 0, 0)) + \
        poke(0x2000, struct.pack("<HHH", 0, 1, 0)) + bytes([2, 3, 0]) + \
        reg_read(0x100) + bytes([1]) + struct.pack("<HBQ", 0x104, 2, 256) + reg_read(0xfc)
    write("mmio_transport_fuzz", "balloon", balloon)
    # Register by register, as a Linux driver probes.
    probe = bytes([0])
    for offset in (0x0, 0x4, 0x8, 0xc):
        probe += reg_read(offset)
    probe += reg_write(0x70, 1) + reg_write(0x70, 3) + reg_write(0x14, 1) + reg_read(0x10) + \
        reg_write(0x24, 1) + reg_write(0x20, 1) + reg_write(0x70, 11) + reg_read(0x70) + \
        reg_write(0x30, 0) + reg_read(0x34) + reg_write(0x38, 4) + reg_write(0x44, 1) + \
        reg_write(0x70, 15)
    write("mmio_transport_fuzz", "probe", probe)


# message_channel_fuzz: fd count u8, datagram.
def message_channel():
    def frame(kind, payload, fds, version=1):
        return struct.pack("<IHHII", 0x48545248, version, kind, len(payload), fds) + payload

    write("message_channel_fuzz", "with-fd", bytes([1]) + frame(3, b"hello", 1))
    write("message_channel_fuzz", "empty", bytes([0]) + frame(1, b"", 0))
    write("message_channel_fuzz", "fd-mismatch", bytes([2]) + frame(7, b"x" * 40, 1))


# vm_config_fuzz: flags u8, JSON.
def vm_config():
    firecracker = {
        "boot-source": {"kernel_image_path": "vmlinux.bin",
                        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"},
        "drives": [{"drive_id": "rootfs", "path_on_host": "rootfs.ext4",
                    "is_root_device": True, "is_read_only": False,
                    "rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 100},
                                     "ops": {"size": 100, "one_time_burst": 10,
                                             "refill_time": 1000}}}],
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": False,
                           "track_dirty_pages": False},
        "network-interfaces": [{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02",
                                "host_dev_name": "tap0"}],
        "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"},
        "balloon": {"amount_mib": 64, "deflate_on_oom": True, "stats_polling_interval_s": 1},
        "entropy": {},
        "metrics": {"metrics_path": "/tmp/metrics.json"},
        "logger": {"log_path": "/tmp/fc.log", "level": "Info"},
    }
    write("vm_config_fuzz", "firecracker", b"\1" + json.dumps(firecracker, indent=1).encode())
    minimal = {"boot-source": {"kernel_image_path": "k"}}
    write("vm_config_fuzz", "minimal", b"\1" + json.dumps(minimal).encode())
    write("vm_config_fuzz", "no-boot-source",
          b"\0" + json.dumps({"machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}).encode())
    write("vm_config_fuzz", "mmds", b"\1" + json.dumps(
        {"boot-source": {"kernel_image_path": "k"},
         "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}],
         "mmds-config": {"network_interfaces": ["eth0"], "version": "V2"}}).encode())


# kernel_loader_fuzz: initrd length u16, image.
def kernel_loader():
    code = b"\xf4" * 16  # hlt
    ehdr = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0x100000, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 64 + 56, 0x100000, 0x100000, len(code), 0x2000, 0x1000)
    write("kernel_loader_fuzz", "elf", struct.pack("<H", 64) + ehdr + phdr + code)

    setup = bytearray(2 * 512)
    setup[0x1f1] = 1  # setup_sects
    struct.pack_into("<H", setup, 0x1fe, 0xaa55)
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020f)
    setup[0x211] = 1  # loadflags: LOADED_HIGH
    struct.pack_into("<I", setup, 0x22c, 0x7fffffff)  # initrd_addr_max
    struct.pack_into("<H", setup, 0x236, 1)  # xloadflags: XLF_KERNEL_64
    struct.pack_into("<I", setup, 0x260, 0x10000)  # init_size
    write("kernel_loader_fuzz", "bzimage", struct.pack("<H", 100) + bytes(setup) + b"\x90" * 1024)


# serial_fuzz / i8042_fuzz: operations.
def legacy():
    def out(offset, value):
        return bytes([0, offset, value])

    def inp(offset):
        return bytes([1, offset])

    linux_init = out(3, 0x80) + out(0, 1) + out(1, 0) + out(3, 3) + out(2, 7) + out(4, 0x0b) + \
        out(1, 0x03) + inp(2) + inp(5)
    typing = bytes([2, 3]) + b"abc" + inp(2) + inp(0) + inp(0) + inp(5) + inp(0)
    write("serial_fuzz", "linux-init", linux_init + out(0, ord("h")) + out(0, ord("i")) + typing)
    write("serial_fuzz", "loopback", out(4, 0x10) + out(0, 0x42) + inp(5) + inp(0) + inp(6) +
          bytes([2, 2]) + b"xy" + out(2, 2) + inp(5) + bytes([3, 1, 0, 1]))

    write("i8042_fuzz", "controller", out(4, 0x20) + inp(0) + out(4, 0x60) + out(0, 0x47) +
          out(4, 0xaa) + inp(4) + inp(0) + out(4, 0xd4) + out(0, 0xf4) + inp(0) + out(0, 0xff) +
          inp(0))
    write("i8042_fuzz", "reset-and-cad", bytes([2]) + inp(4) + inp(0) + inp(0) + inp(0) +
          out(4, 0xfe) + bytes([3, 0, 1, 4]))


def main():
    virtqueue()
    block()
    vsock()
    mmio()
    message_channel()
    vm_config()
    kernel_loader()
    legacy()


if __name__ == "__main__":
    main()
