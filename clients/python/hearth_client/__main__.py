"""hearth: a command line for a Hearth agent.

    python3 -m hearth_client --socket unix:/run/hearth/hearth.sock list -l app=web
    bazel run //clients/python:hearth -- --socket unix:/run/hearth/hearth.sock host

get, list, host and the commands that change a VM print JSON (protobuf's
mapping, Firecracker's key names); watch prints one JSON object per event.
Errors go to stderr as "hearth: CODE: message" with exit status 1.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message

from hearth_client import DEFAULT_TARGET, Client, HearthError

Command = Callable[[Client, argparse.Namespace], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status."""
    args = _parser().parse_args(argv)
    with Client(args.socket, timeout=args.timeout) as client:
        try:
            args.command(client, args)
        except HearthError as error:
            print(f"hearth: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            # The reader of stdout went away (`| head`): stop quietly, as
            # Python's documentation of SIGPIPE suggests.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    return 0


# ----- Commands -----

def _host(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.host_info())


def _list(client: Client, args: argparse.Namespace) -> None:
    vms = [json_format.MessageToDict(vm) for vm in client.list(args.selector)]
    print(json.dumps(vms, indent=2))


def _get(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.get(args.vm_id))


def _snapshot(client: Client, args: argparse.Namespace) -> None:
    client.create_snapshot(args.vm_id, args.state, args.memory, diff=args.diff)


def _load(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.load_snapshot(args.vm_id, args.state, args.memory, resume=args.resume))


def _clone(client: Client, args: argparse.Namespace) -> None:
    vms = client.clone(args.state, args.memory, args.vm_ids, resume=not args.paused,
                       labels=dict(args.labels))
    print(json.dumps([json_format.MessageToDict(vm) for vm in vms], indent=2))


def _create(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.create_vm(
        args.vm_id, args.kernel, boot_args=args.boot_args, vcpus=args.vcpus,
        mem_mib=args.mem, labels=dict(args.labels), start=args.start,
        initrd=args.initrd))


def _start(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.start(args.vm_id))


def _pause(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.pause(args.vm_id))


def _resume(client: Client, args: argparse.Namespace) -> None:
    _print_message(client.resume(args.vm_id))


def _ctrl_alt_del(client: Client, args: argparse.Namespace) -> None:
    client.ctrl_alt_del(args.vm_id)


def _delete(client: Client, args: argparse.Namespace) -> None:
    print(json.dumps({"deleted": client.delete(args.vm_id, force=args.force)}))


def _watch(client: Client, args: argparse.Namespace) -> None:
    for event in client.watch(args.selector, vm_id=args.vm,
                              resource_version=args.resource_version):
        print(json.dumps(json_format.MessageToDict(event)), flush=True)


def _console(client: Client, args: argparse.Namespace) -> None:
    out = sys.stdout.buffer
    with client.console(args.vm_id, replay=args.replay, input=_stdin_input()) as console:
        for data in console:
            out.write(data)
            out.flush()


# ----- Helpers -----

def _print_message(message: Message) -> None:
    print(json_format.MessageToJson(message, indent=2))


def _stdin_input() -> Iterator[bytes] | None:
    """What arrives on stdin when it is a terminal (a line at a time) or a
    pipe; None otherwise (e.g. /dev/null under a service manager).

    Read with os.read, not sys.stdin: the reading thread may still be blocked
    when the console ends, and must not hold the lock of Python's buffered
    stdin while the interpreter exits.
    """
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return None
    if not (os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return None
    return iter(functools.partial(os.read, fd, 4096), b"")


def _label(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Talks to a Hearth agent.")
    parser.add_argument("--socket", default=DEFAULT_TARGET,
                        help=f"the agent's gRPC target (default {DEFAULT_TARGET})")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds per call (default 60)")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, run: Command, help: str, vm_id: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=run)
        if vm_id:
            sub.add_argument("vm_id", metavar="ID")
        return sub

    command("host", _host, "describe the host", vm_id=False)
    listing = command("list", _list, "list VMs", vm_id=False)
    listing.add_argument("-l", "--selector", default="", help="label selector, e.g. app=web")
    command("get", _get, "show one VM")
    _add_create(command("create", _create, "create a VM"))
    command("start", _start, "boot a created VM (InstanceStart)")
    console = command("console", _console,
                      "stream the serial console until the VM ends; stdin lines go to the guest")
    console.add_argument("--replay", action="store_true", help="recent output first")
    command("pause", _pause, "pause the vCPUs")
    command("resume", _resume, "resume the vCPUs")
    command("ctrl-alt-del", _ctrl_alt_del, "press Ctrl-Alt-Del in the guest")
    snapshot = command("snapshot", _snapshot, "snapshot a paused VM (CreateSnapshot)")
    load = command("load", _load, "restore a snapshot into a new VM (LoadSnapshot)")
    clone = command("clone", _clone, "restore one snapshot into new VMs (CloneVm)", vm_id=False)
    clone.add_argument("vm_ids", metavar="ID", nargs="+")
    clone.add_argument("--paused", action="store_true", help="leave the clones paused")
    clone.add_argument("--label", dest="labels", type=_label, action="append", default=[],
                       metavar="KEY=VALUE")
    for sub in (snapshot, load, clone):
        sub.add_argument("--state", required=True, help="state file, under an image root")
        sub.add_argument("--memory", required=True, help="memory file, under an image root")
    snapshot.add_argument("--diff", action="store_true", help="only pages changed since the last")
    load.add_argument("--resume", action="store_true", help="run it (default: stays paused)")
    delete = command("delete", _delete, "delete a VM")
    delete.add_argument("--force", action="store_true", help="kill it even if it runs")
    watch = command("watch", _watch, "print changes to VMs as JSON lines", vm_id=False)
    watch.add_argument("-l", "--selector", default="", help="label selector, e.g. app=web")
    watch.add_argument("--vm", default="", metavar="ID", help="only this VM")
    watch.add_argument("--resource-version", type=int, default=0,
                       help="resume after this version (default: current VMs first)")
    return parser


def _add_create(create: argparse.ArgumentParser) -> None:
    create.add_argument("--kernel", required=True, help="host path under an image root")
    create.add_argument("--initrd", help="host path under an image root")
    create.add_argument("--boot-args", help="kernel command line")
    create.add_argument("--vcpus", type=int, default=1)
    create.add_argument("--mem", type=int, default=128, metavar="MiB")
    create.add_argument("--label", dest="labels", type=_label, action="append", default=[],
                        metavar="KEY=VALUE")
    create.add_argument("--start", action="store_true", help="boot it right away")


if __name__ == "__main__":
    sys.exit(main())
