"""End-to-end test of hearth_client against a real agent.

Starts hearthd on a temporary unix socket (jailed VMMs when running as root
in a normal build, --no_jail otherwise) and drives the test guest's `idle`
scenario only through the client library: host info, create and start,
console output and input, pause and resume (the guest's tick counter shows
it is the same guest), label selectors and paging, watches, Ctrl-Alt-Del,
deletion and error codes. Finally stops hearthd with SIGTERM and checks
that no VMM it started is left.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from collections.abc import Callable
from typing import Any

import grpc

from hearth_client import Client, Console, HearthError, vm_pb2

BOOT_ARGS = "console=ttyS0 hearth.test=idle hearth.tick_ms=200"
LABELS = {"suite": "client-e2e", "role": "idle"}
TICK = re.compile(rb"idle: tick (\d+)")
# Process names of what hearthd starts (comm is truncated to 15 bytes).
VMM_NAMES = ("hearth-vmm", "hearth-jailer")


def runfile(path: str) -> str:
    """A file of this test's runfiles, by its path in the workspace."""
    root = os.environ.get("TEST_SRCDIR") or os.environ["RUNFILES_DIR"]
    return os.path.join(root, "hearth", path)


def skip_reason() -> str | None:
    """Why this host cannot run the test, or None."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as error:
        return f"/dev/kvm: {error.strerror}"
    return None


def process_alive(pid: int) -> bool:
    """`pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def children_of(parent: int) -> set[int]:
    """Pids whose parent is `parent`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == parent:
            found.add(int(entry))
    return found


class Agent:
    """hearthd with its own socket, state, run, image and jail directories."""

    def __init__(self) -> None:
        # Under /tmp rather than $TEST_TMPDIR: a unix socket path has at most
        # 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="hearth-client-test-", dir="/tmp")
        self.images = os.path.join(self.dir, "images")
        self.socket = os.path.join(self.dir, "hearth.sock")
        self.log = os.path.join(self.dir, "hearthd.log")
        # ASan builds cannot jail (dynamic binaries, no seccomp).
        self.jailed = os.geteuid() == 0 and os.environ.get("HEARTH_ASAN") != "1"
        self.cgroup = f"hearth-client-test-{os.getpid()}"
        self.process: subprocess.Popen[bytes] | None = None
        os.mkdir(self.images)

    def argv(self) -> list[str]:
        argv = [
            runfile("agent/hearthd"),
            f"--listen=unix:{self.socket}",
            f"--state_dir={self.dir}/state",
            f"--run_dir={self.dir}/run",
            f"--image_roots={self.images}",
            f"--chroot_base_dir={self.dir}/jail",
            f"--vmm={runfile('vmm/hearth-vmm')}",
            f"--parent_cgroup={self.cgroup}",
        ]
        if self.jailed:
            return argv + [f"--jailer={runfile('jailer/hearth-jailer')}"]
        return argv + ["--no_jail"]

    def start(self, timeout: float = 30.0) -> None:
        """Starts hearthd and waits for its "ready" line."""
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"hearthd: ready on" in self.read_log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"hearthd exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"hearthd not ready after {timeout} s")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; returns hearthd's exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def read_log(self) -> bytes:
        with open(self.log, "rb") as log:
            return log.read()

    def print_logs(self) -> None:
        """Prints hearthd's log and those of the VMMs still on disk."""
        vmm_logs = glob.glob(os.path.join(self.dir, "run", "vms", "*", "vmm.log"))
        for path in [self.log] + sorted(vmm_logs):
            print(f"----- {os.path.relpath(path, self.dir)} -----")
            with open(path, "rb") as log:
                print(log.read().decode(errors="replace"))

    def cleanup(self) -> None:
        """Kills hearthd if it still runs; removes its cgroups and files."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for controller in ("cpu", "memory", "pids", "unified", ""):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join("/sys/fs/cgroup", controller, self.cgroup))
        shutil.rmtree(self.dir, ignore_errors=True)


class ConsoleLog:
    """A console's output, collected on a thread, with waits for patterns."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._text = b""
        self._ended = False
        self.error: HearthError | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def text(self) -> bytes:
        with self._changed:
            return self._text

    def wait_for(self, pattern: bytes, start: int = 0, timeout: float = 30.0) -> re.Match[bytes]:
        """The first match of `pattern` at or after byte `start`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (match := regex.search(self._text, start)):
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    raise AssertionError(f"no {pattern!r} in console output "
                                         f"(error {self.error}):\n{self._text.decode()}")
                self._changed.wait(remaining)
            return match

    def wait_ended(self, timeout: float = 30.0) -> None:
        """Waits for the stream to end (the VM stopped); fails on an error."""
        self._thread.join(timeout)
        if self._thread.is_alive() or self.error is not None:
            raise AssertionError(f"console stream still open or failed: {self.error}")

    def send(self, text: str) -> None:
        self._console.send(text)

    def ticks(self, start: int = 0) -> list[int]:
        return [int(n) for n in TICK.findall(self.text, start)]

    def close(self) -> None:
        self._console.close()
        self._thread.join(10)

    def _read(self) -> None:
        try:
            for data in self._console:
                with self._changed:
                    self._text += data
                    self._changed.notify_all()
        except HearthError as error:
            self.error = error
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()


class ClientEndToEndTest(unittest.TestCase):

    def setUp(self) -> None:
        self.agent = Agent()
        self.addCleanup(self.agent.cleanup)
        self.addCleanup(self.agent.print_logs)
        self.agent.start()
        self.kernel = os.path.join(self.agent.images, "guest.elf")
        shutil.copy(runfile("tests/guest/guest.elf"), self.kernel)
        self.client = Client(f"unix:{self.agent.socket}", timeout=30)
        self.addCleanup(self.client.close)
        self.vmm_pids: set[int] = set()
        self.addCleanup(self.kill_leftover_vmms)
        print(f"hearthd {'jailed' if self.agent.jailed else '--no_jail'} in {self.agent.dir}",
              flush=True)

    def test_end_to_end(self) -> None:
        self.check_host_info()
        vm_id = "e2e-idle"
        console = self.create_and_start(vm_id)
        self.check_input(vm_id, console)
        before_pause = self.client.get(vm_id).resource_version
        self.check_pause_resume(vm_id, console)
        self.check_watch_history(vm_id, before_pause)
        self.check_list()
        self.check_cli(vm_id)
        self.check_ctrl_alt_del(vm_id, console)
        self.check_delete(vm_id)
        self.check_errors()
        self.check_agent_stops()

    # ----- Steps -----

    def check_host_info(self) -> None:
        host = self.client.host_info()
        self.assertIn(host.kvm_kind, ("hardware", "pvm"))
        self.assertTrue(host.versions.agent)
        self.assertGreater(host.capacity.vcpus, 0)
        self.assertEqual(host.allocated.vms, 0)

    def create_and_start(self, vm_id: str) -> ConsoleLog:
        vm = self.client.create_vm(vm_id, self.kernel, boot_args=BOOT_ARGS, mem_mib=64,
                                   labels=LABELS)
        self.assertEqual(vm.state, vm_pb2.VM_STATE_CONFIGURING)
        self.assertEqual(dict(vm.labels), LABELS)
        self.track(vm)
        vm = self.client.start(vm_id)
        self.assertEqual(vm.state, vm_pb2.VM_STATE_RUNNING, vm.status.reason)
        self.assertNotEqual(vm.status.vmm_pid, 0)
        self.track(vm)
        # CreateVm is idempotent: the same request returns the running VM.
        again = self.client.create_vm(vm_id, self.kernel, boot_args=BOOT_ARGS, mem_mib=64,
                                      labels=LABELS)
        self.assertEqual(again.state, vm_pb2.VM_STATE_RUNNING)
        console = ConsoleLog(self.client.console(vm_id, replay=True))
        self.addCleanup(console.close)
        console.wait_for(b"idle: ready\r?\n")
        console.wait_for(TICK.pattern)
        return console

    def check_input(self, vm_id: str, console: ConsoleLog) -> None:
        console.send("hello\n")
        console.wait_for(b"idle: echo hello\r?\n")
        self.client.send_input(vm_id, "again\n")
        console.wait_for(b"idle: echo again\r?\n")

    def check_pause_resume(self, vm_id: str, console: ConsoleLog) -> None:
        vm = self.client.pause(vm_id)
        self.assertEqual(vm.state, vm_pb2.VM_STATE_PAUSED)
        self.assertEqual(self.client.get(vm_id).state, vm_pb2.VM_STATE_PAUSED)
        # Output already on its way when the vCPUs stopped may still arrive
        # during the first second; none may arrive during the next one.
        time.sleep(1.0)
        paused_at = max(console.ticks())
        time.sleep(1.0)
        self.assertEqual(max(console.ticks()), paused_at, "ticks while PAUSED")
        mark = len(console.text)
        vm = self.client.resume(vm_id)
        self.assertEqual(vm.state, vm_pb2.VM_STATE_RUNNING)
        # The same guest goes on counting: the next tick is the next number,
        # and it never booted again.
        after = int(console.wait_for(TICK.pattern, start=mark).group(1))
        self.assertEqual(after, paused_at + 1)
        self.assertEqual(console.text.count(b"idle: ready"), 1)

    def check_watch_history(self, vm_id: str, since: int) -> None:
        states = []
        last_version = since
        with contextlib.closing(self.client.watch(vm_id=vm_id, resource_version=since,
                                                  timeout=30)) as events:
            for event in events:
                self.assertEqual(event.type, vm_pb2.WatchEvent.MODIFIED)
                self.assertGreater(event.resource_version, last_version)
                self.assertEqual(event.vm.resource_version, event.resource_version)
                last_version = event.resource_version
                states.append(event.vm.state)
                if states[-2:] == [vm_pb2.VM_STATE_PAUSED, vm_pb2.VM_STATE_RUNNING]:
                    break
        self.assertIn(vm_pb2.VM_STATE_PAUSED, states)

    def check_list(self) -> None:
        # A second VM, never started, so that paging has two pages.
        other = self.client.create_vm("e2e-other", self.kernel, labels={"suite": "client-e2e"})
        self.track(other)
        ids = [vm.vm_id for vm in self.client.list("suite=client-e2e", page_size=1)]
        self.assertEqual(ids, ["e2e-idle", "e2e-other"])
        matching = self.client.list("suite=client-e2e,role=idle,!missing")
        self.assertEqual([vm.vm_id for vm in matching], ["e2e-idle"])
        self.assertGreaterEqual(matching.resource_version, other.resource_version)
        self.assertEqual(list(self.client.list("suite=something-else")), [])
        self.assertTrue(self.client.delete("e2e-other"))

    def check_cli(self, vm_id: str) -> None:
        vm = json.loads(self.cli("get", vm_id).stdout)
        self.assertEqual((vm["vm_id"], vm["state"]), (vm_id, "VM_STATE_RUNNING"))
        vms = json.loads(self.cli("list", "-l", "role=idle").stdout)
        self.assertEqual([vm["vm_id"] for vm in vms], [vm_id])
        missing = self.cli("get", "no-such-vm", check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertTrue(missing.stderr.startswith("hearth: NOT_FOUND: "), missing.stderr)

    def check_ctrl_alt_del(self, vm_id: str, console: ConsoleLog) -> None:
        self.client.ctrl_alt_del(vm_id)
        vm = self.client.wait_for_state(
            vm_id, {vm_pb2.VM_STATE_STOPPED, vm_pb2.VM_STATE_FAILED}, timeout=30)
        self.assertEqual(vm.state, vm_pb2.VM_STATE_STOPPED, vm.status.reason)
        self.assertTrue(vm.status.exit.guest_reset)
        self.assertEqual(vm.status.vmm_pid, 0)
        self.assertIn("HEARTH-TEST-PASS idle", vm.status.exit.console_tail)
        console.wait_for(b"idle: ctrl-alt-del\r?\n")
        console.wait_for(b"HEARTH-TEST-PASS idle")
        console.wait_ended()

    def check_delete(self, vm_id: str) -> None:
        self.assertTrue(self.client.delete(vm_id))
        self.assertFalse(self.client.delete(vm_id))
        self.assertEqual(self.client.list("suite=client-e2e"), [])

    def check_errors(self) -> None:
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.client.get, "no-such-vm")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.client.wait_for_state,
                        "no-such-vm", vm_pb2.VM_STATE_RUNNING, 10)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.create_vm,
                        "bad id!", self.kernel)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.list, "app in (a,b)")
        outside = runfile("tests/guest/guest.elf")  # a kernel, but not under the image root
        error = self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.client.create_vm,
                                "e2e-outside", outside, start=True)
        self.assertIn("kernel_image_path", error.message)
        # The agent keeps the VM it created before refusing to boot it
        # (CONFIGURING, with a VMM): delete it so that no VMM outlives the test.
        with contextlib.suppress(HearthError):
            self.track(self.client.get("e2e-outside"))
        self.client.delete("e2e-outside", force=True)

    def check_agent_stops(self) -> None:
        assert self.agent.process is not None
        self.vmm_pids |= children_of(self.agent.process.pid)
        self.assertEqual(self.agent.stop(), 0)
        deadline = time.monotonic() + 10
        while (alive := self.live_vmms()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(alive, [], "VMM processes left after DeleteVm and SIGTERM")

    # ----- Helpers -----

    def assertCode(self, code: grpc.StatusCode, call: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> HearthError:
        with self.assertRaises(HearthError) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.code, code, caught.exception.message)
        return caught.exception

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs `python3 -m hearth_client --socket ... ARGS`."""
        argv = [sys.executable, "-m", "hearth_client", "--socket", f"unix:{self.agent.socket}"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        result = subprocess.run(argv + list(args), env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=60)
        if check:
            self.assertEqual(result.returncode, 0, result.stderr)
        return result

    def track(self, vm: vm_pb2.Vm) -> None:
        if vm.status.vmm_pid:
            self.vmm_pids.add(vm.status.vmm_pid)

    def live_vmms(self) -> list[tuple[int, str]]:
        return [(pid, process_name(pid)) for pid in sorted(self.vmm_pids)
                if process_alive(pid) and process_name(pid) in VMM_NAMES]

    def kill_leftover_vmms(self) -> None:
        for pid, _ in self.live_vmms():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    reason = skip_reason()
    if reason is not None:
        print(f"SKIPPED: {reason}", flush=True)
        print(f"SKIPPED: {reason}", file=sys.stderr)
        return
    unittest.main()


if __name__ == "__main__":
    main()
