"""The Hearth client: one method per common task on the agent's gRPC API.

A thin layer over the generated stubs (hearth.v1.hearth_pb2_grpc): requests
are built from plain arguments, responses are the protobuf messages of
proto/hearth/v1/vm.proto (Vm, HostInfo, WatchEvent, ...), and every failed
call raises HearthError with the gRPC status code and the agent's message.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, Union

import grpc
from google.protobuf import json_format

from hearth.v1 import config_pb2, hearth_pb2, hearth_pb2_grpc, vm_pb2

DEFAULT_TARGET = "unix:/run/hearth/hearth.sock"

# A drive as a message or as Firecracker's JSON body of PUT /drives/{id}.
DriveSpec = Union[config_pb2.Drive, Mapping[str, Any]]

_BOOKMARK = vm_pb2.WatchEvent.BOOKMARK
_DELETED = vm_pb2.WatchEvent.DELETED


class HearthError(Exception):
    """A call the agent refused or that failed: its gRPC code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> HearthError:
        """The HearthError for a failed grpc call."""
        return cls(error.code(), error.details() or "")


class VmList(list):
    """ListVms' VMs from all pages, ordered by vm_id.

    `resource_version` is the version the first page reflects: watch from it
    to see every later change.
    """

    resource_version: int = 0


class Console:
    """An attached serial console (StreamConsole).

    Iterating yields the guest's output as bytes until the VM has stopped and
    all of its output was delivered; chunks() yields the ConsoleChunk
    messages instead (offsets, dropped bytes). send() queues input for the
    guest. close(), or leaving a `with` block, detaches.
    """

    def __init__(self, stub: hearth_pb2_grpc.HearthStub, vm_id: str,
                 replay: bool, input: Iterable[bytes] | None) -> None:
        self._requests: queue.Queue[hearth_pb2.ConsoleRequest | None] = queue.Queue()
        self._closed = False
        opening = hearth_pb2.ConsoleOpen(vm_id=vm_id, replay=replay)
        self._requests.put(hearth_pb2.ConsoleRequest(open=opening))
        self._call = stub.StreamConsole(self._request_stream())
        if input is not None:
            threading.Thread(target=self._forward, args=(input,), daemon=True).start()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks():
            yield chunk.data

    def chunks(self) -> Iterator[vm_pb2.ConsoleChunk]:
        """Yields the console's chunks, replayed ones first if asked for."""
        try:
            yield from self._call
        except grpc.RpcError as error:
            if not (self._closed and error.code() == grpc.StatusCode.CANCELLED):
                raise HearthError.from_rpc(error) from None
        finally:
            self._requests.put(None)  # ends the request stream's thread

    def send(self, data: bytes | str) -> None:
        """Queues bytes (or UTF-8 text) for the guest's serial port."""
        if isinstance(data, str):
            data = data.encode()
        if data:
            self._requests.put(hearth_pb2.ConsoleRequest(input=data))

    def close(self) -> None:
        """Detaches from the console; the VM is not affected."""
        self._closed = True
        self._call.cancel()
        self._requests.put(None)

    def _request_stream(self) -> Iterator[hearth_pb2.ConsoleRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _forward(self, input: Iterable[bytes]) -> None:
        for data in input:
            if self._closed:
                return
            self.send(data)


class Client:
    """A connection to one hearthd.

    `target` is a gRPC target: "unix:/path/to/hearth.sock" (a bare absolute
    path works too) or "host:port". `timeout` (seconds) applies to every
    unary call.
    """

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float = 60.0) -> None:
        if target.startswith("/"):
            target = "unix:" + target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._stub = hearth_pb2_grpc.HearthStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel; open consoles and watches end."""
        self._channel.close()

    # ----- VMs -----

    def create_vm(self, vm_id: str, kernel: str, boot_args: str | None = None,
                  vcpus: int = 1, mem_mib: int = 128,
                  labels: Mapping[str, str] | None = None,
                  drives: Iterable[DriveSpec] = (), start: bool = False,
                  initrd: str | None = None) -> vm_pb2.Vm:
        """Creates a VM (CreateVm) booting `kernel`, and with `start` boots it.

        `kernel`, `initrd` and drive paths are host paths under the agent's
        image roots. `drives` are config_pb2.Drive messages or Firecracker's
        drive JSON as dicts ({"drive_id": "rootfs", "path_on_host": ...,
        "is_root_device": True}). Idempotent: repeating the same call returns
        the VM as it is now. Returns the VM.
        """
        boot_source = config_pb2.BootSource(kernel_image_path=kernel, initrd_path=initrd or "")
        if boot_args is not None:
            boot_source.boot_args = boot_args
        config = config_pb2.VmConfig(
            boot_source=boot_source,
            machine_config=config_pb2.MachineConfig(vcpu_count=vcpus, mem_size_mib=mem_mib),
            drives=[_drive(d) for d in drives])
        request = hearth_pb2.CreateVmRequest(
            vm_id=vm_id, labels=dict(labels or {}), config=config, start=start)
        return self._unary("CreateVm", request)

    def start(self, vm_id: str) -> vm_pb2.Vm:
        """Boots a CONFIGURING VM (InstanceStart) and waits until it runs;
        returns the VM as it is then."""
        self._action(vm_id, "InstanceStart")
        return self.get(vm_id)

    def get(self, vm_id: str) -> vm_pb2.Vm:
        """Returns one VM (GetVm)."""
        return self._unary("GetVm", hearth_pb2.GetVmRequest(vm_id=vm_id))

    def list(self, selector: str = "", page_size: int = 0) -> VmList:
        """Returns every VM matching the label selector, all pages (ListVms).

        `selector` is Kubernetes equality-based: "app=web,tier!=db,gpu,!old".
        """
        vms = VmList()
        token = ""
        while True:
            page = self._unary("ListVms", hearth_pb2.ListVmsRequest(
                label_selector=selector, page_size=page_size, page_token=token))
            if not token:
                vms.resource_version = page.resource_version
            vms.extend(page.vms)
            token = page.next_page_token
            if not token:
                return vms

    def delete(self, vm_id: str, force: bool = False) -> bool:
        """Deletes a VM (DeleteVm); False if there was none with this id.

        Without `force` a STARTING, RUNNING or PAUSED VM is refused
        (FAILED_PRECONDITION); with it, its VMM is killed.
        """
        request = hearth_pb2.DeleteVmRequest(vm_id=vm_id, force=force)
        return self._unary("DeleteVm", request).deleted

    def host_info(self) -> vm_pb2.HostInfo:
        """Describes the host: KVM kind, capacity, allocation, versions."""
        return self._unary("GetHostInfo", hearth_pb2.GetHostInfoRequest())

    # ----- Run state -----

    def pause(self, vm_id: str) -> vm_pb2.Vm:
        """Stops the VM's vCPUs (PatchVm "Paused"); returns the VM."""
        return self._patch_vm(vm_id, "Paused")

    def resume(self, vm_id: str) -> vm_pb2.Vm:
        """Runs a paused VM's vCPUs again (PatchVm "Resumed"); returns the VM."""
        return self._patch_vm(vm_id, "Resumed")

    def ctrl_alt_del(self, vm_id: str) -> None:
        """Presses Ctrl-Alt-Del on the VM's keyboard (a Linux guest reboots,
        so the VM stops)."""
        self._action(vm_id, "SendCtrlAltDel")

    # ----- Snapshots -----

    def create_snapshot(self, vm_id: str, state_path: str, memory_path: str,
                        diff: bool = False) -> None:
        """Writes a snapshot of a PAUSED VM (CreateSnapshot) to two host files
        under the image roots. `diff`: only the pages changed since the last
        snapshot (the VM must track dirty pages)."""
        params = config_pb2.SnapshotCreateParams(
            snapshot_type="Diff" if diff else "Full", snapshot_path=state_path,
            mem_file_path=memory_path)
        self._unary("CreateSnapshot", hearth_pb2.CreateSnapshotRequest(vm_id=vm_id, params=params))

    def load_snapshot(self, vm_id: str, state_path: str, memory_path: str,
                      resume: bool = False) -> vm_pb2.Vm:
        """Restores a snapshot into a freshly created VM (LoadSnapshot); it
        ends PAUSED, or RUNNING with `resume`. Returns the VM."""
        params = config_pb2.SnapshotLoadParams(
            snapshot_path=state_path, resume_vm=resume,
            mem_backend=config_pb2.MemoryBackend(backend_type="File", backend_path=memory_path))
        request = hearth_pb2.LoadSnapshotRequest(vm_id=vm_id, params=params)
        return self._unary("LoadSnapshot", request).vm

    def clone(self, state_path: str, memory_path: str, vm_ids: Iterable[str],
              resume: bool = True,
              labels: Mapping[str, str] | None = None) -> list[vm_pb2.Vm]:
        """Restores one snapshot into several new VMs (CloneVm), all or
        nothing; returns them in the order of `vm_ids`."""
        request = hearth_pb2.CloneVmRequest(
            snapshot_path=state_path,
            mem_backend=config_pb2.MemoryBackend(backend_type="File", backend_path=memory_path),
            clones=[hearth_pb2.CloneSpec(vm_id=vm_id, resume_vm=resume, labels=dict(labels or {}))
                    for vm_id in vm_ids])
        return list(self._unary("CloneVm", request).vms)

    # ----- Watching -----

    def watch(self, selector: str = "", vm_id: str = "", resource_version: int = 0,
              bookmarks: bool = False,
              timeout: float | None = None) -> Iterator[vm_pb2.WatchEvent]:
        """Yields changes to VMs (WatchVms) until closed or `timeout` passes.

        From resource_version 0: an ADDED event per current VM first. To
        resume after a disconnect, pass the resource_version of the last event
        seen. BOOKMARK events (no VM changed, the stream is up to date at
        their version) are yielded only with `bookmarks`. Closing the
        generator cancels the stream.
        """
        request = hearth_pb2.WatchVmsRequest(
            label_selector=selector, vm_id=vm_id, resource_version=resource_version)
        call = self._stub.WatchVms(request, timeout=timeout)
        try:
            for event in call:
                if bookmarks or event.type != _BOOKMARK:
                    yield event
        except grpc.RpcError as error:
            raise HearthError.from_rpc(error) from None
        finally:
            call.cancel()

    def wait_for_state(self, vm_id: str, states: int | Collection[int],
                       timeout: float = 60.0) -> vm_pb2.Vm:
        """Waits until the VM is in one of `states` (vm_pb2.VM_STATE_*).

        Watches the VM rather than polling it. Returns the VM as it was when
        it reached the state. Raises HearthError NOT_FOUND if the VM does not
        exist or is deleted, DEADLINE_EXCEEDED after `timeout` seconds.
        """
        wanted = {states} if isinstance(states, int) else set(states)
        vm: vm_pb2.Vm | None = None
        events = self.watch(vm_id=vm_id, bookmarks=True, timeout=timeout)
        try:
            for event in events:
                if event.type == _DELETED or (event.type == _BOOKMARK and vm is None):
                    raise HearthError(grpc.StatusCode.NOT_FOUND, f"no VM {vm_id!r}")
                if event.type != _BOOKMARK:
                    vm = event.vm
                    if vm.state in wanted:
                        return vm
        except HearthError as error:
            if error.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            names = ", ".join(sorted(vm_pb2.VmState.Name(s) for s in wanted))
            now = vm_pb2.VmState.Name(vm.state) if vm is not None else "unknown"
            raise HearthError(error.code, f"VM {vm_id!r} is {now}, not {names}, "
                              f"after {timeout} s") from None
        finally:
            events.close()
        raise HearthError(grpc.StatusCode.UNAVAILABLE, "the agent ended the watch")

    # ----- Console -----

    def console(self, vm_id: str, replay: bool = False,
                input: Iterable[bytes] | None = None) -> Console:
        """Attaches to a VM's serial console (StreamConsole).

        The result is iterable: it yields output bytes (the ring buffer first
        with `replay`) until the VM has stopped and its output is delivered.
        `input`, if given, is read on a thread of its own and sent to the
        guest; Console.send() sends more.
        """
        return Console(self._stub, vm_id, replay, input)

    def send_input(self, vm_id: str, data: bytes | str) -> None:
        """Sends bytes (or UTF-8 text) to a VM's serial port and returns once
        the agent has handed them on to the VMM.

        StreamConsole does not acknowledge input, so this opens a console,
        sends the input and then a second `open`, which the agent reads after
        the input and refuses with INVALID_ARGUMENT: that refusal is the
        acknowledgement. Input reaching a VM that is not RUNNING is dropped
        by the agent.
        """
        self.get(vm_id)  # NOT_FOUND / INVALID_ARGUMENT for the id itself
        if isinstance(data, str):
            data = data.encode()
        opening = hearth_pb2.ConsoleRequest(open=hearth_pb2.ConsoleOpen(vm_id=vm_id))
        requests = [opening, hearth_pb2.ConsoleRequest(input=data), opening]
        call = self._stub.StreamConsole(iter(requests), timeout=self.timeout)
        try:
            for _ in call:
                pass  # live output while the agent gets to the second open
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise HearthError.from_rpc(error) from None

    # ----- Helpers -----

    def _unary(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise HearthError.from_rpc(error) from None

    def _action(self, vm_id: str, action_type: str) -> None:
        action = config_pb2.InstanceActionInfo(action_type=action_type)
        self._unary("PutAction", hearth_pb2.PutActionRequest(vm_id=vm_id, action=action))

    def _patch_vm(self, vm_id: str, state: str) -> vm_pb2.Vm:
        update = config_pb2.VmStateUpdate(state=state)
        return self._unary("PatchVm", hearth_pb2.PatchVmRequest(vm_id=vm_id, vm_state=update))


def _drive(spec: DriveSpec) -> config_pb2.Drive:
    if isinstance(spec, config_pb2.Drive):
        return spec
    return json_format.ParseDict(dict(spec), config_pb2.Drive())
