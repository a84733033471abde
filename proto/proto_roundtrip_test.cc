// Round trips of Hearth's public messages through the binary, text and JSON
// formats, the JSON naming convention (Firecracker's keys), and parsing of
// Firecracker --config-file documents into hearth.v1.VmConfig.
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "hearth/v1/config.pb.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "hearth/v1/hearth.pb.h"
#include "hearth/v1/vm.pb.h"

namespace hearth::v1 {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;
using ::google::protobuf::TextFormat;
using ::google::protobuf::util::JsonStringToMessage;
using ::google::protobuf::util::MessageDifferencer;
using ::google::protobuf::util::MessageToJsonString;

// ---- Fully populated messages -----------------------------------------------

TokenBucket Bucket(int64_t size) {
  TokenBucket bucket;
  bucket.set_size(size);
  bucket.set_one_time_burst(size / 2 + 1);
  bucket.set_refill_time(100);
  return bucket;
}

RateLimiter Limiter(int64_t bytes, int64_t ops) {
  RateLimiter limiter;
  *limiter.mutable_bandwidth() = Bucket(bytes);
  *limiter.mutable_ops() = Bucket(ops);
  return limiter;
}

// 64-bit values above 2^53 check that JSON keeps them exact (as strings).
constexpr int64_t kHugeBytes = (int64_t{1} << 60) + 1;

VmConfig FullVmConfig() {
  VmConfig config;
  BootSource* boot = config.mutable_boot_source();
  boot->set_kernel_image_path("/srv/images/vmlinux");
  boot->set_initrd_path("/srv/images/initrd.cpio.gz");
  boot->set_boot_args("console=ttyS0 reboot=k panic=1");

  MachineConfig* machine = config.mutable_machine_config();
  machine->set_vcpu_count(2);
  machine->set_mem_size_mib(1024);
  machine->set_smt(true);
  machine->set_track_dirty_pages(true);
  machine->set_huge_pages("2M");
  machine->set_cpu_template("None");

  CpuConfig* cpu = config.mutable_cpu_config();
  cpu->add_kvm_capabilities("171");
  cpu->add_kvm_capabilities("!172");
  CpuidLeafModifier* leaf = cpu->add_cpuid_modifiers();
  leaf->set_leaf("0x1");
  leaf->set_subleaf("0x0");
  leaf->set_flags(1);
  CpuidRegisterModifier* reg = leaf->add_modifiers();
  reg->set_register_("ecx");
  reg->set_bitmap("0bxxxxxxxxxxxxxxxxxxxxxxxxxxxx0001");
  MsrModifier* msr = cpu->add_msr_modifiers();
  msr->set_addr("0x10a");
  msr->set_bitmap("0b" + std::string(63, 'x') + "0");

  Drive* root = config.add_drives();
  root->set_drive_id("rootfs");
  root->set_path_on_host("/srv/images/rootfs.ext4");
  root->set_is_root_device(true);
  root->set_is_read_only(true);
  root->set_partuuid("0eaa91a0-01");
  root->set_cache_type("Writeback");
  root->set_io_engine("Sync");
  *root->mutable_rate_limiter() = Limiter(kHugeBytes, 1000);
  root->set_socket("/run/vhost-user.sock");

  NetworkInterface* eth0 = config.add_network_interfaces();
  eth0->set_iface_id("eth0");
  eth0->set_host_dev_name("tap0");
  eth0->set_guest_mac("06:00:ac:10:00:02");
  eth0->set_mtu(9000);
  *eth0->mutable_rx_rate_limiter() = Limiter(1 << 20, 100);
  *eth0->mutable_tx_rate_limiter() = Limiter(2 << 20, 200);

  Vsock* vsock = config.mutable_vsock();
  vsock->set_guest_cid(3);
  vsock->set_uds_path("/run/hearth/vm1/vsock.sock");
  vsock->set_vsock_id("vsock0");

  *config.mutable_entropy()->mutable_rate_limiter() = Limiter(4096, 10);

  Serial* serial = config.mutable_serial();
  serial->set_serial_out_path("/var/log/hearth/vm1.console");
  *serial->mutable_rate_limiter() = Bucket(65536);

  Balloon* balloon = config.mutable_balloon();
  balloon->set_amount_mib(256);
  balloon->set_deflate_on_oom(true);
  balloon->set_stats_polling_interval_s(5);
  balloon->set_free_page_hinting(true);
  balloon->set_free_page_reporting(true);

  Logger* logger = config.mutable_logger();
  logger->set_log_path("/var/log/hearth/vm1.log");
  logger->set_level("Debug");
  logger->set_show_level(true);
  logger->set_show_log_origin(true);
  logger->set_module("devices::virtio");

  Metrics* metrics = config.mutable_metrics();
  metrics->set_metrics_path("/var/log/hearth/vm1.metrics");
  metrics->set_emit_id(true);
  (*metrics->mutable_properties())["pool"] = "blue";

  MmdsConfig* mmds_config = config.mutable_mmds_config();
  mmds_config->set_version("V2");
  mmds_config->add_network_interfaces("eth0");
  mmds_config->set_ipv4_address("169.254.170.2");
  mmds_config->set_imds_compat(true);

  auto& mmds = *config.mutable_mmds()->mutable_fields();
  mmds["instance-id"].set_string_value("i-0123");
  mmds["cores"].set_number_value(2);
  (*mmds["tags"].mutable_struct_value()->mutable_fields())["env"].set_string_value("test");
  mmds["gone"].set_null_value(google::protobuf::NULL_VALUE);

  Pmem* pmem = config.add_pmem();
  pmem->set_id("pmem0");
  pmem->set_path_on_host("/srv/images/pmem.img");
  pmem->set_root_device(true);
  pmem->set_read_only(true);
  *pmem->mutable_rate_limiter() = Limiter(1, 1);

  MemoryHotplugConfig* hotplug = config.mutable_memory_hotplug();
  hotplug->set_total_size_mib(4096);
  hotplug->set_slot_size_mib(128);
  hotplug->set_block_size_mib(2);
  return config;
}

google::protobuf::Timestamp Time(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  t.set_nanos(123000000);
  return t;
}

Vm FullVm() {
  Vm vm;
  vm.set_vm_id("vm-1");
  (*vm.mutable_labels())["app"] = "web";
  (*vm.mutable_labels())["tier"] = "frontend";
  *vm.mutable_spec() = FullVmConfig();
  vm.set_state(VM_STATE_STOPPED);
  vm.set_resource_version(uint64_t{1} << 62);

  VmStatus* status = vm.mutable_status();
  status->set_reason("guest reset via i8042");
  VmExit* exit = status->mutable_exit();
  exit->set_exit_code(0);
  exit->set_signal(31);
  exit->set_bad_syscall(41);
  exit->set_guest_reset(true);
  exit->set_console_tail("reboot: Restarting system\n");
  status->set_vmm_pid(4242);
  *status->mutable_created_at() = Time(1700000000);
  *status->mutable_started_at() = Time(1700000001);
  *status->mutable_stopped_at() = Time(1700000100);
  BootTiming* timing = status->mutable_boot_timing();
  timing->set_create_to_vmm_ready_us(12000);
  timing->set_start_to_running_us(3000);
  timing->set_start_to_first_output_us(45000);
  timing->set_start_to_guest_ready_us(125000);
  Condition* ready = status->add_conditions();
  ready->set_type("GuestReady");
  ready->set_status(CONDITION_STATUS_TRUE);
  ready->set_reason("ReadinessMarkerSeen");
  ready->set_message("HEARTH-READY seen on ttyS0");
  *ready->mutable_last_transition_time() = Time(1700000002);
  return vm;
}

SnapshotLoadParams FullSnapshotLoadParams() {
  SnapshotLoadParams params;
  params.set_snapshot_path("/srv/snapshots/base.state");
  params.mutable_mem_backend()->set_backend_type("File");
  params.mutable_mem_backend()->set_backend_path("/srv/snapshots/base.mem");
  params.set_mem_file_path("/srv/snapshots/base.mem");
  params.set_enable_diff_snapshots(true);
  params.set_track_dirty_pages(true);
  params.set_resume_vm(true);
  NetworkOverride* net = params.add_network_overrides();
  net->set_iface_id("eth0");
  net->set_host_dev_name("tap7");
  params.mutable_vsock_override()->set_uds_path("/run/hearth/vm7/v.sock");
  params.set_clock_realtime(true);
  params.set_huge_pages("Snapshot");
  return params;
}

HostInfo FullHostInfo() {
  HostInfo info;
  info.set_hostname("host-a");
  info.set_kvm_kind("pvm");
  info.set_cgroup_version(2);
  info.mutable_capacity()->set_vcpus(64);
  info.mutable_capacity()->set_memory_mib(uint64_t{1} << 40);
  info.mutable_capacity()->set_max_vms(500);
  info.mutable_allocated()->set_vcpus(4);
  info.mutable_allocated()->set_memory_mib(2048);
  info.mutable_allocated()->set_vms(2);
  info.mutable_versions()->set_agent("0.1.0");
  info.mutable_versions()->set_vmm("0.1.0");
  info.mutable_versions()->set_jailer("0.1.0");
  info.mutable_versions()->set_kernel("6.1.0-13-amd64");
  info.add_features("snapshot");
  info.add_features("clone");
  return info;
}

// Fails for every field of `message` (recursively, except inside protobuf's
// own well-known types) that is unset, empty or zero, so that the fixtures
// above stay complete when fields are added.
void ExpectFullyPopulated(const Message& message, const std::string& path) {
  const Descriptor* descriptor = message.GetDescriptor();
  if (descriptor->file()->package() == "google.protobuf") return;
  const Reflection* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const std::string where = path + "." + field->name();
    if (field->is_repeated()) {
      const int size = reflection->FieldSize(message, field);
      EXPECT_GT(size, 0) << where << " is empty";
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        for (int j = 0; j < size; ++j) {
          ExpectFullyPopulated(reflection->GetRepeatedMessage(message, field, j),
                               where + "[" + std::to_string(j) + "]");
        }
      }
      continue;
    }
    const auto* oneof = field->real_containing_oneof();
    if (oneof != nullptr) {
      EXPECT_TRUE(reflection->HasOneof(message, oneof)) << where;
      continue;
    }
    // Proto3 scalars without presence count as set when not zero/empty.
    EXPECT_TRUE(reflection->HasField(message, field)) << where << " is unset";
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        reflection->HasField(message, field)) {
      ExpectFullyPopulated(reflection->GetMessage(message, field), where);
    }
  }
}

// ---- Round trips ------------------------------------------------------------

template <typename T>
void ExpectRoundTrips(const T& original) {
  SCOPED_TRACE(original.GetTypeName());

  std::string binary;
  ASSERT_TRUE(original.SerializeToString(&binary));
  T from_binary;
  ASSERT_TRUE(from_binary.ParseFromString(binary));
  std::string diff;
  MessageDifferencer binary_differ;
  binary_differ.ReportDifferencesToString(&diff);
  EXPECT_TRUE(binary_differ.Compare(original, from_binary)) << diff;

  std::string text;
  ASSERT_TRUE(TextFormat::PrintToString(original, &text));
  T from_text;
  ASSERT_TRUE(TextFormat::ParseFromString(text, &from_text)) << text;
  diff.clear();
  MessageDifferencer text_differ;
  text_differ.ReportDifferencesToString(&diff);
  EXPECT_TRUE(text_differ.Compare(original, from_text)) << diff;

  std::string json;
  ASSERT_TRUE(MessageToJsonString(original, &json).ok());
  T from_json;
  const auto status = JsonStringToMessage(json, &from_json);
  ASSERT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  diff.clear();
  MessageDifferencer json_differ;
  json_differ.ReportDifferencesToString(&diff);
  EXPECT_TRUE(json_differ.Compare(original, from_json)) << diff << json;
}

TEST(RoundTrip, VmConfig) {
  const VmConfig config = FullVmConfig();
  ExpectFullyPopulated(config, "VmConfig");
  ExpectRoundTrips(config);
}

TEST(RoundTrip, Vm) {
  const Vm vm = FullVm();
  ExpectFullyPopulated(vm, "Vm");
  ExpectRoundTrips(vm);
}

TEST(RoundTrip, SnapshotLoadParams) {
  const SnapshotLoadParams params = FullSnapshotLoadParams();
  ExpectFullyPopulated(params, "SnapshotLoadParams");
  ExpectRoundTrips(params);
}

TEST(RoundTrip, HostInfo) {
  const HostInfo info = FullHostInfo();
  ExpectFullyPopulated(info, "HostInfo");
  ExpectRoundTrips(info);
}

TEST(RoundTrip, WatchEventAndConsoleChunk) {
  WatchEvent event;
  event.set_type(WatchEvent::MODIFIED);
  *event.mutable_vm() = FullVm();
  event.set_resource_version(77);
  ExpectRoundTrips(event);

  ConsoleChunk chunk;
  chunk.set_data(std::string("boot\0\xff\r\n", 8));  // not UTF-8: bytes
  chunk.set_offset(4096);
  chunk.set_dropped_bytes(12);
  chunk.set_replay(true);
  ExpectRoundTrips(chunk);
}

TEST(RoundTrip, UnsetOptionalsStayUnset) {
  // PATCH semantics rely on presence: an unset field must not come back as
  // zero/false after a trip through JSON.
  PatchMachineConfigRequest patch;
  patch.set_vm_id("vm-1");
  patch.mutable_machine_config()->set_smt(false);
  std::string json;
  ASSERT_TRUE(MessageToJsonString(patch, &json).ok());
  EXPECT_EQ(json, R"({"vm_id":"vm-1","machine_config":{"smt":false}})");
  PatchMachineConfigRequest back;
  ASSERT_TRUE(JsonStringToMessage(json, &back).ok());
  EXPECT_TRUE(back.machine_config().has_smt());
  EXPECT_FALSE(back.machine_config().has_vcpu_count());
  EXPECT_FALSE(back.machine_config().has_mem_size_mib());
}

// ---- JSON names -------------------------------------------------------------

// Every field's JSON name is its proto name (Firecracker's snake_case key),
// except VmConfig's, which are Firecracker's kebab-case config-file keys.
void ExpectJsonNamesAreFirecrackers(const Descriptor* descriptor) {
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    std::string expected = field->name();
    if (descriptor->full_name() == "hearth.v1.VmConfig") {
      for (char& c : expected) {
        if (c == '_') c = '-';
      }
    }
    EXPECT_EQ(field->json_name(), expected) << field->full_name();
  }
  for (int i = 0; i < descriptor->nested_type_count(); ++i) {
    const Descriptor* nested = descriptor->nested_type(i);
    if (!nested->options().map_entry()) ExpectJsonNamesAreFirecrackers(nested);
  }
}

TEST(JsonNames, AreFirecrackersKeysInEveryFile) {
  for (const FileDescriptor* file : {VmConfig::descriptor()->file(), Vm::descriptor()->file(),
                                     CreateVmRequest::descriptor()->file()}) {
    for (int i = 0; i < file->message_type_count(); ++i) {
      ExpectJsonNamesAreFirecrackers(file->message_type(i));
    }
  }
}

TEST(JsonNames, PrintedConfigUsesFirecrackerKeys) {
  std::string json;
  ASSERT_TRUE(MessageToJsonString(FullVmConfig(), &json).ok());
  for (const char* key :
       {"\"boot-source\"", "\"machine-config\"", "\"cpu-config\"", "\"network-interfaces\"",
        "\"mmds-config\"", "\"memory-hotplug\"", "\"kernel_image_path\"", "\"mem_size_mib\"",
        "\"refill_time\"", "\"one_time_burst\"", "\"huge_pages\":\"2M\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }
  EXPECT_EQ(json.find("kernelImagePath"), std::string::npos) << json;
  // 64-bit integers are JSON strings, exact beyond 2^53.
  EXPECT_NE(json.find("\"size\":\"1152921504606846977\""), std::string::npos) << json;
}

// ---- Firecracker config files -----------------------------------------------

// A --config-file document as Firecracker's users write them: kebab-case
// top-level keys, explicit nulls, rate limiters with and without
// one_time_burst, every device kind.
constexpr char kFirecrackerConfig[] = R"json({
  "boot-source": {
    "kernel_image_path": "/srv/images/vmlinux.bin",
    "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
    "initrd_path": null
  },
  "drives": [
    {
      "drive_id": "rootfs",
      "path_on_host": "/srv/images/ubuntu-22.04.ext4",
      "is_root_device": true,
      "partuuid": null,
      "is_read_only": false,
      "cache_type": "Unsafe",
      "io_engine": "Sync",
      "rate_limiter": null,
      "socket": null
    },
    {
      "drive_id": "data",
      "path_on_host": "/srv/images/data.ext4",
      "is_root_device": false,
      "is_read_only": true,
      "cache_type": "Writeback",
      "rate_limiter": {
        "bandwidth": {"size": 52428800, "one_time_burst": 104857600,
                      "refill_time": 1000},
        "ops": {"size": 1000, "refill_time": 1000}
      }
    }
  ],
  "machine-config": {
    "vcpu_count": 2,
    "mem_size_mib": 1024,
    "smt": false,
    "track_dirty_pages": true,
    "huge_pages": "2M"
  },
  "cpu-config": null,
  "balloon": {
    "amount_mib": 64,
    "deflate_on_oom": true,
    "stats_polling_interval_s": 1
  },
  "network-interfaces": [
    {
      "iface_id": "eth0",
      "guest_mac": "06:00:AC:10:00:02",
      "host_dev_name": "tap0",
      "rx_rate_limiter": {"bandwidth": {"size": 10485760, "refill_time": 100}},
      "tx_rate_limiter": null
    }
  ],
  "vsock": {"guest_cid": 3, "uds_path": "/tmp/v.sock", "vsock_id": "vsock0"},
  "entropy": {"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}},
  "logger": {
    "log_path": "/var/log/fc.log",
    "level": "Debug",
    "show_level": true,
    "show_log_origin": false
  },
  "metrics": {"metrics_path": "/var/log/fc.metrics"},
  "mmds-config": {
    "version": "V2",
    "network_interfaces": ["eth0"],
    "ipv4_address": "169.254.170.2"
  }
})json";

TEST(FirecrackerConfig, ParsesIntoVmConfig) {
  VmConfig config;
  const auto status = JsonStringToMessage(kFirecrackerConfig, &config);
  ASSERT_TRUE(status.ok()) << status.ToString();

  EXPECT_EQ(config.boot_source().kernel_image_path(), "/srv/images/vmlinux.bin");
  EXPECT_EQ(config.boot_source().boot_args(), "console=ttyS0 reboot=k panic=1 pci=off");
  EXPECT_EQ(config.boot_source().initrd_path(), "");

  ASSERT_EQ(config.drives_size(), 2);
  const Drive& rootfs = config.drives(0);
  EXPECT_EQ(rootfs.drive_id(), "rootfs");
  EXPECT_TRUE(rootfs.is_root_device());
  EXPECT_TRUE(rootfs.has_is_read_only());
  EXPECT_FALSE(rootfs.is_read_only());
  EXPECT_EQ(rootfs.cache_type(), "Unsafe");
  EXPECT_EQ(rootfs.io_engine(), "Sync");
  EXPECT_FALSE(rootfs.has_rate_limiter());  // null means unset
  const Drive& data = config.drives(1);
  EXPECT_TRUE(data.is_read_only());
  EXPECT_EQ(data.cache_type(), "Writeback");
  EXPECT_EQ(data.io_engine(), "");  // default "Sync" is the agent's to fill in
  EXPECT_EQ(data.rate_limiter().bandwidth().size(), 52428800);
  EXPECT_EQ(data.rate_limiter().bandwidth().one_time_burst(), 104857600);
  EXPECT_EQ(data.rate_limiter().bandwidth().refill_time(), 1000);
  EXPECT_FALSE(data.rate_limiter().ops().has_one_time_burst());
  EXPECT_EQ(data.rate_limiter().ops().size(), 1000);

  const MachineConfig& machine = config.machine_config();
  EXPECT_EQ(machine.vcpu_count(), 2u);
  EXPECT_EQ(machine.mem_size_mib(), 1024u);
  EXPECT_TRUE(machine.has_smt());
  EXPECT_FALSE(machine.smt());
  EXPECT_TRUE(machine.track_dirty_pages());
  EXPECT_EQ(machine.huge_pages(), "2M");
  EXPECT_FALSE(machine.has_cpu_template());
  EXPECT_FALSE(config.has_cpu_config());

  EXPECT_EQ(config.balloon().amount_mib(), 64u);
  EXPECT_TRUE(config.balloon().deflate_on_oom());
  EXPECT_EQ(config.balloon().stats_polling_interval_s(), 1u);

  ASSERT_EQ(config.network_interfaces_size(), 1);
  const NetworkInterface& eth0 = config.network_interfaces(0);
  EXPECT_EQ(eth0.iface_id(), "eth0");
  EXPECT_EQ(eth0.host_dev_name(), "tap0");
  EXPECT_EQ(eth0.guest_mac(), "06:00:AC:10:00:02");
  EXPECT_FALSE(eth0.has_mtu());
  EXPECT_EQ(eth0.rx_rate_limiter().bandwidth().size(), 10485760);
  EXPECT_FALSE(eth0.rx_rate_limiter().has_ops());
  EXPECT_FALSE(eth0.has_tx_rate_limiter());

  EXPECT_EQ(config.vsock().guest_cid(), 3u);
  EXPECT_EQ(config.vsock().uds_path(), "/tmp/v.sock");
  EXPECT_EQ(config.vsock().vsock_id(), "vsock0");
  EXPECT_EQ(config.entropy().rate_limiter().bandwidth().refill_time(), 100);

  EXPECT_EQ(config.logger().log_path(), "/var/log/fc.log");
  EXPECT_EQ(config.logger().level(), "Debug");
  EXPECT_TRUE(config.logger().show_level());
  EXPECT_TRUE(config.logger().has_show_log_origin());
  EXPECT_FALSE(config.logger().show_log_origin());
  EXPECT_EQ(config.metrics().metrics_path(), "/var/log/fc.metrics");

  EXPECT_EQ(config.mmds_config().version(), "V2");
  ASSERT_EQ(config.mmds_config().network_interfaces_size(), 1);
  EXPECT_EQ(config.mmds_config().network_interfaces(0), "eth0");
  EXPECT_EQ(config.mmds_config().ipv4_address(), "169.254.170.2");
  EXPECT_FALSE(config.mmds_config().imds_compat());

  EXPECT_FALSE(config.has_serial());
  EXPECT_FALSE(config.has_mmds());
}

TEST(FirecrackerConfig, HearthExtensionsParse) {
  VmConfig config;
  const auto status = JsonStringToMessage(R"({
      "boot-source": {"kernel_image_path": "/k"},
      "serial": {"serial_out_path": "/var/log/console",
                 "rate_limiter": {"size": 4096, "refill_time": 1000}},
      "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                              "mtu": 9000}],
      "mmds": {"latest": {"meta-data": {"instance-id": "i-1"}}},
      "pmem": [],
      "memory-hotplug": null})",
                                          &config);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(config.serial().serial_out_path(), "/var/log/console");
  EXPECT_EQ(config.serial().rate_limiter().size(), 4096);
  EXPECT_EQ(config.network_interfaces(0).mtu(), 9000u);
  EXPECT_EQ(config.mmds()
                .fields()
                .at("latest")
                .struct_value()
                .fields()
                .at("meta-data")
                .struct_value()
                .fields()
                .at("instance-id")
                .string_value(),
            "i-1");
  EXPECT_EQ(config.pmem_size(), 0);
  EXPECT_FALSE(config.has_memory_hotplug());
}

TEST(FirecrackerConfig, UnknownKeysFailNamingTheKey) {
  struct Case {
    const char* json;
    const char* key;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"boot-source": {"kernel_image_path": "/k"}, "gpu": {}})", "gpu"},
           {R"({"drives": [{"drive_id": "d", "path_on_hots": "/x"}]})", "path_on_hots"},
           {R"({"machine-config": {"vcpu_count": 1, "mem_size_mb": 64}})", "mem_size_mb"},
           // Snake-case top-level keys are Hearth's field names, but
           // camelCase is neither Firecracker's nor accepted.
           {R"({"bootSource": {"kernel_image_path": "/k"}})", "bootSource"},
       }) {
    VmConfig config;
    const auto status = JsonStringToMessage(c.json, &config);
    EXPECT_FALSE(status.ok()) << c.json;
    EXPECT_NE(status.ToString().find(c.key), std::string::npos) << status.ToString();
  }
}

// Protobuf 3.21's JSON parser is laxer than serde in ways the agent must not
// rely on: numbers and booleans may be quoted ("2", "true", even "yes"), and a
// lone object stands for a one-element array ({"drives": {...}}). Values of
// the wrong JSON type are rejected, and the message names the field's path.
TEST(FirecrackerConfig, WrongTypesFailNamingTheField) {
  struct Case {
    const char* json;
    const char* path;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"machine-config": {"vcpu_count": 2.5}})", "machine_config.vcpu_count"},
           {R"({"balloon": {"amount_mib": -1, "deflate_on_oom": true}})", "balloon.amount_mib"},
           {R"({"drives": [{"drive_id": 5}]})", "drives[0].drive_id"},
           {R"({"drives": [{"is_root_device": 1}]})", "drives[0].is_root_device"},
           {R"({"drives": "rootfs"})", "drives"},
       }) {
    VmConfig config;
    const auto status = JsonStringToMessage(c.json, &config);
    EXPECT_FALSE(status.ok()) << c.json;
    EXPECT_NE(status.ToString().find(c.path), std::string::npos) << status.ToString();
  }
}

// ---- Service ----------------------------------------------------------------

TEST(Service, HasEveryRpcAndVmIdComesFirst) {
  const auto* service = CreateVmRequest::descriptor()->file()->FindServiceByName("Hearth");
  ASSERT_NE(service, nullptr);
  EXPECT_STREQ(Hearth::service_full_name(), "hearth.v1.Hearth");
  EXPECT_EQ(service->method_count(), 38);
  for (int i = 0; i < service->method_count(); ++i) {
    const auto* method = service->method(i);
    const Descriptor* input = method->input_type();
    const FieldDescriptor* vm_id = input->FindFieldByName("vm_id");
    if (vm_id == nullptr || method->name() == "WatchVms") continue;
    EXPECT_EQ(vm_id->number(), 1) << method->name();
    EXPECT_EQ(vm_id->type(), FieldDescriptor::TYPE_STRING) << method->name();
  }
  const auto* watch = service->FindMethodByName("WatchVms");
  ASSERT_NE(watch, nullptr);
  EXPECT_TRUE(watch->server_streaming());
  EXPECT_FALSE(watch->client_streaming());
  const auto* console = service->FindMethodByName("StreamConsole");
  ASSERT_NE(console, nullptr);
  EXPECT_TRUE(console->server_streaming());
  EXPECT_TRUE(console->client_streaming());
}

}  // namespace
}  // namespace hearth::v1
