#!/usr/bin/python3
"""Boot benchmark: Hearth's hearth-vmm against QEMU's microvm machine.

Both boot the same test guest ELF (Hearth through Linux's 64-bit boot
protocol, QEMU through its PVH note) with the same memory and vCPU count and
the `reset` scenario, which prints one line and ends the VM. For each run it
measures, from the moment the VMM process is spawned:
  first output  the first byte of guest serial output on the VMM's stdout
  exit          the VMM process has exited
and, in separate runs, the VMM's peak RSS and peak anonymous RSS. Prints the medians of N
runs of each, interleaved so that machine noise hits both alike, and the
Hearth/QEMU ratios.

Usage: bench/boot [--runs N] [--mem MIB] [--cpus N]
"""
import argparse
import json
import os
import select
import subprocess
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(argv):
    """Returns (first_output_s, exit_s, stdout, wait status)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    start = time.monotonic()
    pid = os.posix_spawn(argv[0] if argv[0].startswith("/") else shutil.which(argv[0]),
                         argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                       (os.POSIX_SPAWN_DUP2, out_w, 1),
                                       (os.POSIX_SPAWN_DUP2, err_w, 2)])
    for fd in (out_w, err_w, null):
        os.close(fd)
    first = None
    out = b""
    fds = [out_r, err_r]
    while fds:
        ready, _, _ = select.select(fds, [], [], 30)
        if not ready:
            os.kill(pid, 9)
            raise RuntimeError("timed out: " + " ".join(argv))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                fds.remove(fd)
                os.close(fd)
                continue
            if fd == out_r:
                if first is None:
                    first = time.monotonic() - start
                out += chunk
    _, status = os.waitpid(pid, 0)
    end = time.monotonic() - start
    return first, end, out.decode(errors="replace"), status


def memory_kib(argv):
    """Samples /proc/<pid>/status every millisecond while the VMM runs.

    Returns (peak RSS, peak anonymous RSS), in KiB. Anonymous memory is what
    each VMM process owns privately (heap, stacks, guest RAM it touched);
    the rest of RSS is file pages of the binary and its libraries, shared
    through the page cache by every VMM on the host.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    hwm = anon = 0
    path = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        try:
            with open(path) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if "VmHWM" in fields:  # absent once the process is a zombie
                hwm = max(hwm, int(fields["VmHWM"].split()[0]))
                anon = max(anon, int(fields["RssAnon"].split()[0]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.001)
    return hwm, anon


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mem", type=int, default=128)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--vmm", default=os.path.join(ROOT, "bazel-bin/vmm/hearth-vmm"))
    parser.add_argument("--guest", default=os.path.join(ROOT, "bazel-bin/tests/guest/guest.elf"))
    args = parser.parse_args()

    cmdline = "console=ttyS0 hearth.test=reset"
    config = {
        "boot-source": {"kernel_image_path": args.guest, "boot_args": cmdline},
        "machine-config": {"vcpu_count": args.cpus, "mem_size_mib": args.mem},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        config_path = f.name
    hearth = [args.vmm, "--config=" + config_path]
    qemu = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off",
            "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", str(args.mem),
            "-smp", str(args.cpus), "-nodefaults", "-no-user-config", "-nographic",
            "-no-reboot", "-serial", "stdio", "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", args.guest,
            "-append", cmdline]

    results = {"hearth": [], "qemu": []}
    for i in range(args.runs + 1):
        for name, argv in (("hearth", hearth), ("qemu", qemu)):
            first, end, out, status = run_once(argv)
            if "HEARTH-TEST-PASS reset" not in out:
                sys.exit(f"{name}: guest did not pass:\n{out}")
            if i > 0:  # the first round warms caches
                results[name].append((first, end) + memory_kib(argv))
    os.unlink(config_path)

    def median(name, index):
        return statistics.median(r[index] for r in results[name])

    print(f"bench/boot: test guest 'reset' scenario, {args.cpus} vCPU, "
          f"{args.mem} MiB, median of {args.runs} runs each")
    print(f"{'':8} {'first output ms':>16} {'exit ms':>10} {'peak RSS MiB':>13} "
          f"{'anon RSS MiB':>13}")
    for name in ("hearth", "qemu"):
        print(f"{name:8} {median(name, 0) * 1e3:16.2f} {median(name, 1) * 1e3:10.2f} "
              f"{median(name, 2) / 1024:13.2f} {median(name, 3) / 1024:13.2f}")
    print(f"{'ratio':8} {median('hearth', 0) / median('qemu', 0):16.2f} "
          f"{median('hearth', 1) / median('qemu', 1):10.2f} "
          f"{median('hearth', 2) / median('qemu', 2):13.2f} "
          f"{median('hearth', 3) / median('qemu', 3):13.2f}   (hearth / qemu)")
    print("anon RSS includes the guest RAM the guest touched (~0.1 MiB here); "
          "the rest of RSS is shared file pages.")
    print("exit includes KVM's teardown of the VM: with an in-kernel PIT (Hearth, "
          "like Firecracker) that waits for the PIT's worker thread, ~16 ms on "
          "PVM hosts; QEMU microvm emulates the PIT in user space.")
    kvm = "pvm" if os.path.exists("/sys/module/kvm_pvm") else "hardware"
    print(f"host KVM: {kvm}")


if __name__ == "__main__":
    main()
