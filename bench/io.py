#!/usr/bin/python3
"""I/O benchmark: virtio-blk and virtio-net of hearth-vmm vs QEMU microvm.

Block: the test guest's `blk_bench` scenario reads or writes 64 MiB
sequentially at CPL3 (native on PVM hosts), 4 KiB and 64 KiB requests, 16 in
flight, polling. Throughput is the guest's own timing of the run (guest_us,
from its START line to the last completion), the same guest under both
VMMs. Baseline: this host reading/writing the same file with the same
request size (buffered pread/pwrite, warm page cache, like the VMMs).

Net (root only): the guest's `net_bench` sends frames as fast as it can;
frames per second by the guest's timing, the tap in a private network
namespace (nothing reads it; the kernel drops the frames).

Each number is the median of --runs runs; the VMMs are interleaved.
Usage: bench/io [--runs N] [--mib N] [--frames N]
"""
import argparse
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMM = os.path.join(ROOT, "bazel-bin/vmm/hearth-vmm")
GUEST = os.path.join(ROOT, "bazel-bin/tests/guest/guest.elf")
QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off",
        "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", "256", "-nodefaults",
        "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-global", "virtio-mmio.force-legacy=false", "-kernel", GUEST]


def timed_markers(argv, end_marker, timeout=300):
    """Runs argv to its end; returns (seconds of the guest's run, END line).

    The seconds are the guest's own measurement (guest_us= on its
    blk_bench/net_bench line: TSC calibrated against the in-kernel LAPIC
    timer, the same under both VMMs), from its START to its last
    completion. Timestamping the START and END lines as they arrive here
    is too coarse for runs of a few milliseconds: both can arrive in one
    read."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    buffer = b""
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            proc.kill()
            sys.exit(f"timed out: {' '.join(argv)}\n{buffer.decode(errors='replace')}")
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
    proc.wait()
    text = buffer.decode(errors="replace")
    match = re.search(r"_bench: .* guest_us=(\d+)", text)
    if end_marker not in text or match is None or int(match.group(1)) == 0:
        sys.exit(f"no benchmark result from {' '.join(argv)}:\n{text}")
    end_line = text[text.index(end_marker):].split("\n")[0]
    return int(match.group(1)) / 1e6, end_line


def hearth_blk(disk, args):
    config = {"boot-source": {"kernel_image_path": GUEST, "boot_args": "console=ttyS0 " + args},
              "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
              "drives": [{"drive_id": "bench", "path_on_host": disk, "is_root_device": False}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        return timed_markers([VMM, "--config=" + f.name], "HEARTH-BENCH-END")[0]
    finally:
        os.unlink(f.name)


def qemu_blk(disk, args):
    argv = QEMU + ["-append", "console=ttyS0 " + args,
                   "-drive", f"id=d0,file={disk},format=raw,if=none,cache=writeback",
                   "-device", "virtio-blk-device,drive=d0"]
    return timed_markers(argv, "HEARTH-BENCH-END")[0]


def host_blk(disk, op, size, total):
    fd = os.open(disk, os.O_RDWR)
    buf = bytearray(size)
    start = time.monotonic()
    for offset in range(0, total, size):
        if op == "read":
            os.preadv(fd, [buf], offset)
        else:
            os.pwritev(fd, [buf], offset)
    elapsed = time.monotonic() - start
    os.close(fd)
    return elapsed


def block(runs, mib):
    total = mib << 20
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(total + (1 << 20))
        with open(disk, "rb") as f:  # warm the page cache
            while f.read(1 << 20):
                pass
        print(f"block: sequential, {mib} MiB per run, 16 requests in flight, "
              f"median of {runs} runs (MiB/s)")
        print(f"{'':14} {'hearth':>9} {'qemu':>9} {'host file':>10} {'hearth/host':>12} "
              f"{'hearth/qemu':>12}")
        for op in ("read", "write"):
            for size in (4096, 65536):
                args = (f"hearth.test=blk_bench hearth.bench_op={op} hearth.bench_size={size} "
                        f"hearth.bench_bytes={total}")
                h, q, b = [], [], []
                for _ in range(runs):
                    h.append(total / hearth_blk(disk, args) / (1 << 20))
                    q.append(total / qemu_blk(disk, args) / (1 << 20))
                    b.append(total / host_blk(disk, op, size, total) / (1 << 20))
                mh, mq, mb = statistics.median(h), statistics.median(q), statistics.median(b)
                print(f"{op + ' ' + str(size // 1024) + ' KiB':14} {mh:9.0f} {mq:9.0f} "
                      f"{mb:10.0f} {mh / mb:12.2f} {mh / mq:12.2f}")


def network(runs, frames):
    if os.geteuid() != 0:
        print("net: SKIPPED (needs root for a network namespace and a tap)")
        return
    ns = f"hearth-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "tuntap", "add", "dev", "btap0", "mode", "tap",
                        "vnet_hdr"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "btap0", "up"], check=True)
        print(f"net: guest -> tap, {frames} frames per run, median of {runs} runs (frames/s)")
        print(f"{'':14} {'hearth':>10} {'qemu':>10} {'hearth/qemu':>12}")
        for size in (64, 1500):
            args = (f"console=ttyS0 hearth.test=net_bench hearth.bench_frames={frames} "
                    f"hearth.bench_frame_size={size}")
            config = {"boot-source": {"kernel_image_path": GUEST, "boot_args": args},
                      "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
                      "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "btap0",
                                              "guest_mac": "06:00:ac:10:00:02"}]}
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(config, f)
            h, q = [], []
            for _ in range(runs):
                h.append(frames / timed_markers(["ip", "netns", "exec", ns, VMM,
                                                 "--config=" + f.name], "HEARTH-BENCH-END")[0])
                q.append(frames / timed_markers(
                    ["ip", "netns", "exec", ns] + QEMU +
                    ["-append", args, "-netdev", "tap,id=n0,ifname=btap0,script=no,downscript=no",
                     "-device", "virtio-net-device,netdev=n0,mac=06:00:ac:10:00:02"],
                    "HEARTH-BENCH-END")[0])
            os.unlink(f.name)
            mh, mq = statistics.median(h), statistics.median(q)
            print(f"{str(size) + ' B frames':14} {mh:10.0f} {mq:10.0f} {mh / mq:12.2f}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--frames", type=int, default=100000)
    args = parser.parse_args()
    block(args.runs, args.mib)
    network(args.runs, args.frames)
    print("host KVM:", "pvm" if os.path.exists("/sys/module/kvm_pvm") else "hardware")


if __name__ == "__main__":
    main()
