"""Checks the generated Python modules of Hearth's public API.

The service must offer every RPC with the agreed request and response types,
the gRPC stub and servicer must expose them, and messages must survive a JSON
round trip with Firecracker's keys.
"""

import json
import unittest

import grpc
from google.protobuf import json_format

from hearth.v1 import config_pb2
from hearth.v1 import hearth_pb2
from hearth.v1 import hearth_pb2_grpc
from hearth.v1 import vm_pb2

# RPC name -> (request type, response type, client streaming, server streaming)
EXPECTED_RPCS = {
    # Firecracker's resources.
    "GetInstanceInfo": ("GetInstanceInfoRequest", "InstanceInfo"),
    "GetVersion": ("GetVersionRequest", "VersionInfo"),
    "PutAction": ("PutActionRequest", "PutActionResponse"),
    "PutBootSource": ("PutBootSourceRequest", "BootSource"),
    "GetMachineConfig": ("GetMachineConfigRequest", "MachineConfig"),
    "PutMachineConfig": ("PutMachineConfigRequest", "MachineConfig"),
    "PatchMachineConfig": ("PatchMachineConfigRequest", "MachineConfig"),
    "PutCpuConfig": ("PutCpuConfigRequest", "CpuConfig"),
    "PutDrive": ("PutDriveRequest", "Drive"),
    "PatchDrive": ("PatchDriveRequest", "Drive"),
    "PutNetworkInterface": ("PutNetworkInterfaceRequest", "NetworkInterface"),
    "PatchNetworkInterface": (
        "PatchNetworkInterfaceRequest",
        "NetworkInterface",
    ),
    "PutVsock": ("PutVsockRequest", "Vsock"),
    "PutEntropy": ("PutEntropyRequest", "Entropy"),
    "PutSerial": ("PutSerialRequest", "Serial"),
    "GetBalloon": ("GetBalloonRequest", "Balloon"),
    "PutBalloon": ("PutBalloonRequest", "Balloon"),
    "PatchBalloon": ("PatchBalloonRequest", "Balloon"),
    "GetBalloonStatistics": ("GetBalloonStatisticsRequest", "BalloonStatistics"),
    "PatchBalloonStatistics": ("PatchBalloonStatisticsRequest", "Balloon"),
    "PutLogger": ("PutLoggerRequest", "Logger"),
    "PutMetrics": ("PutMetricsRequest", "Metrics"),
    "PutMmds": ("PutMmdsRequest", "google.protobuf.Struct"),
    "PatchMmds": ("PatchMmdsRequest", "google.protobuf.Struct"),
    "GetMmds": ("GetMmdsRequest", "google.protobuf.Struct"),
    "PutMmdsConfig": ("PutMmdsConfigRequest", "MmdsConfig"),
    "CreateSnapshot": ("CreateSnapshotRequest", "CreateSnapshotResponse"),
    "LoadSnapshot": ("LoadSnapshotRequest", "LoadSnapshotResponse"),
    "PatchVm": ("PatchVmRequest", "Vm"),
    "GetVmConfig": ("GetVmConfigRequest", "VmConfig"),
    # Hearth's own.
    "CreateVm": ("CreateVmRequest", "Vm"),
    "DeleteVm": ("DeleteVmRequest", "DeleteVmResponse"),
    "GetVm": ("GetVmRequest", "Vm"),
    "ListVms": ("ListVmsRequest", "ListVmsResponse"),
    "WatchVms": ("WatchVmsRequest", "WatchEvent", False, True),
    "StreamConsole": ("ConsoleRequest", "ConsoleChunk", True, True),
    "GetHostInfo": ("GetHostInfoRequest", "HostInfo"),
    "CloneVm": ("CloneVmRequest", "CloneVmResponse"),
}

FIRECRACKER_CONFIG = {
    "boot-source": {
        "kernel_image_path": "/srv/images/vmlinux.bin",
        "boot_args": "console=ttyS0 reboot=k panic=1",
    },
    "drives": [
        {
            "drive_id": "rootfs",
            "path_on_host": "/srv/images/rootfs.ext4",
            "is_root_device": True,
            "is_read_only": False,
            "rate_limiter": {
                "bandwidth": {
                    "size": 1048576,
                    "one_time_burst": 0,
                    "refill_time": 100,
                },
            },
        }
    ],
    "machine-config": {"vcpu_count": 2, "mem_size_mib": 512, "smt": False},
    "network-interfaces": [
        {"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}
    ],
    "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock"},
    "balloon": {"amount_mib": 0, "deflate_on_oom": True},
    "logger": {"log_path": "/var/log/fc.log", "level": "Info"},
    "metrics": {"metrics_path": "/var/log/fc.metrics"},
    "mmds-config": {"network_interfaces": ["eth0"], "version": "V2"},
    "mmds": {"latest": {"meta-data": {"instance-id": "i-1"}}},
}


def _type_name(descriptor):
    name = descriptor.full_name
    return name[len("hearth.v1."):] if name.startswith("hearth.v1.") else name


class ServiceTest(unittest.TestCase):
    def test_service_has_every_rpc(self):
        service = hearth_pb2.DESCRIPTOR.services_by_name["Hearth"]
        self.assertEqual(service.full_name, "hearth.v1.Hearth")
        self.assertEqual(
            sorted(m.name for m in service.methods), sorted(EXPECTED_RPCS)
        )
        for method in service.methods:
            expected = EXPECTED_RPCS[method.name]
            request, response = expected[:2]
            client_streaming, server_streaming = (expected[2:] or (False, False))
            with self.subTest(rpc=method.name):
                self.assertEqual(_type_name(method.input_type), request)
                self.assertEqual(_type_name(method.output_type), response)
                self.assertEqual(method.client_streaming, client_streaming)
                self.assertEqual(method.server_streaming, server_streaming)

    def test_stub_and_servicer_expose_every_rpc(self):
        channel = grpc.insecure_channel("unix:///nonexistent/hearth.sock")
        try:
            stub = hearth_pb2_grpc.HearthStub(channel)
            for name in EXPECTED_RPCS:
                with self.subTest(rpc=name):
                    self.assertTrue(callable(getattr(stub, name)))
                    self.assertTrue(
                        callable(getattr(hearth_pb2_grpc.HearthServicer, name))
                    )
        finally:
            channel.close()

    def test_per_vm_requests_start_with_vm_id(self):
        service = hearth_pb2.DESCRIPTOR.services_by_name["Hearth"]
        for method in service.methods:
            field = method.input_type.fields_by_name.get("vm_id")
            if field is None or method.name == "WatchVms":
                continue
            with self.subTest(rpc=method.name):
                self.assertEqual(field.number, 1)
                self.assertEqual(method.input_type.fields[0].name, "vm_id")


class JsonTest(unittest.TestCase):
    def test_firecracker_config_round_trip(self):
        text = json.dumps(FIRECRACKER_CONFIG)
        config = json_format.Parse(text, config_pb2.VmConfig())
        self.assertEqual(
            config.boot_source.kernel_image_path, "/srv/images/vmlinux.bin"
        )
        self.assertEqual(config.machine_config.vcpu_count, 2)
        self.assertTrue(config.machine_config.HasField("smt"))
        self.assertFalse(config.machine_config.HasField("huge_pages"))
        self.assertEqual(config.drives[0].rate_limiter.bandwidth.size, 1048576)
        bucket = config.drives[0].rate_limiter.bandwidth
        self.assertTrue(bucket.HasField("one_time_burst"))
        self.assertEqual(config.mmds_config.network_interfaces, ["eth0"])
        self.assertEqual(config.mmds["latest"]["meta-data"]["instance-id"], "i-1")

        printed = json.loads(json_format.MessageToJson(config))
        # Firecracker's keys, kebab-case at the top, snake_case inside.
        self.assertIn("boot-source", printed)
        self.assertIn("kernel_image_path", printed["boot-source"])
        self.assertIn("network-interfaces", printed)
        # 64-bit integers print as strings; everything else is unchanged.
        bandwidth = printed["drives"][0]["rate_limiter"]["bandwidth"]
        self.assertEqual(bandwidth["size"], "1048576")
        bandwidth["size"] = int(bandwidth["size"])
        bandwidth["refill_time"] = int(bandwidth["refill_time"])
        bandwidth["one_time_burst"] = int(bandwidth["one_time_burst"])
        # Proto3 omits false/0 scalars without presence.
        expected = json.loads(text)
        del expected["balloon"]["amount_mib"]
        self.assertEqual(printed, expected)

        again = json_format.Parse(
            json_format.MessageToJson(config), config_pb2.VmConfig()
        )
        self.assertEqual(again, config)

    def test_vm_and_request_round_trip(self):
        config = json_format.Parse(
            json.dumps(FIRECRACKER_CONFIG), config_pb2.VmConfig()
        )
        vm = vm_pb2.Vm(
            vm_id="vm-1",
            labels={"app": "web"},
            spec=config,
            state=vm_pb2.VM_STATE_RUNNING,
            resource_version=2**60 + 1,
        )
        vm.status.reason = "running"
        vm.status.exit.exit_code = 0
        vm.status.created_at.FromSeconds(1700000000)
        vm.status.conditions.add(
            type="GuestReady", status=vm_pb2.CONDITION_STATUS_TRUE, reason="Marker"
        )
        text = json_format.MessageToJson(vm)
        self.assertIn('"resource_version": "1152921504606846977"', text)
        self.assertIn('"VM_STATE_RUNNING"', text)
        self.assertEqual(json_format.Parse(text, vm_pb2.Vm()), vm)

        request = hearth_pb2.CreateVmRequest(vm_id="vm-1", config=config, start=True)
        from_json = json_format.Parse(
            json_format.MessageToJson(request), hearth_pb2.CreateVmRequest()
        )
        self.assertEqual(from_json, request)
        self.assertEqual(
            hearth_pb2.CreateVmRequest.FromString(request.SerializeToString()), request
        )

    def test_unknown_key_is_rejected_by_name(self):
        bad = dict(FIRECRACKER_CONFIG, **{"gpu-passthrough": {}})
        with self.assertRaisesRegex(json_format.ParseError, "gpu-passthrough"):
            json_format.Parse(json.dumps(bad), config_pb2.VmConfig())


if __name__ == "__main__":
    unittest.main()
