"""A small Python client for Hearth's agent, hearthd.

    from hearth_client import Client, vm_pb2

    with Client("unix:/run/hearth/hearth.sock") as hearth:
        hearth.create_vm("web-1", kernel="/var/lib/hearth/images/vmlinux",
                         boot_args="console=ttyS0 reboot=k panic=1",
                         labels={"app": "web"}, start=True)
        with hearth.console("web-1", replay=True) as console:
            for data in console:
                print(data.decode(errors="replace"), end="")
        hearth.wait_for_state("web-1", vm_pb2.VM_STATE_STOPPED)
        hearth.delete("web-1")

Command line: python3 -m hearth_client --help.
"""
from hearth.v1 import config_pb2, hearth_pb2, vm_pb2
from hearth_client.client import DEFAULT_TARGET, Client, Console, HearthError, VmList

__all__ = [
    "DEFAULT_TARGET",
    "Client",
    "Console",
    "HearthError",
    "VmList",
    "config_pb2",
    "hearth_pb2",
    "vm_pb2",
]
