#include "api/validate.h"

#include <string>

#include "gtest/gtest.h"

namespace hearth::api {
namespace {

v1::VmConfig Minimal() {
  v1::VmConfig c;
  c.mutable_boot_source()->set_kernel_image_path("/images/vmlinux");
  return c;
}

void ExpectInvalid(const v1::VmConfig& c, const std::string& field_and_problem,
                   absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  absl::Status s = ValidateVmConfig(c, true);
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(field_and_problem), absl::string_view::npos)
      << "expected \"" << field_and_problem << "\" in: " << s;
}

TEST(Validate, MinimalConfigIsValidWithDefaults) {
  v1::VmConfig c = Minimal();
  EXPECT_TRUE(ValidateVmConfig(c, true).ok());
  EXPECT_EQ(VcpuCount(c.machine_config()), 1u);
  EXPECT_EQ(MemSizeMib(c.machine_config()), 128u);
  EXPECT_FALSE(HugePages2M(c.machine_config()));
  EXPECT_TRUE(ValidateVmConfig(v1::VmConfig(), false).ok());
  ExpectInvalid(v1::VmConfig(), "boot_source.kernel_image_path: is required");
}

TEST(Validate, MachineConfig) {
  v1::VmConfig c = Minimal();
  c.mutable_machine_config()->set_vcpu_count(0);
  ExpectInvalid(c, "machine_config.vcpu_count: must be 1..32, got 0");
  c.mutable_machine_config()->set_vcpu_count(33);
  ExpectInvalid(c, "got 33");
  c.mutable_machine_config()->set_vcpu_count(3);
  c.mutable_machine_config()->set_smt(true);
  ExpectInvalid(c, "must be 1 or even with smt");
  c.mutable_machine_config()->set_vcpu_count(4);
  EXPECT_TRUE(ValidateVmConfig(c, true).ok());
  c.mutable_machine_config()->set_mem_size_mib(0);
  ExpectInvalid(c, "machine_config.mem_size_mib: must be > 0");
  c.mutable_machine_config()->set_mem_size_mib(129);
  c.mutable_machine_config()->set_huge_pages("2M");
  ExpectInvalid(c, "multiple of 2");
  c.mutable_machine_config()->set_huge_pages("1G");
  ExpectInvalid(c, "machine_config.huge_pages: \"1G\" is not one of None, 2M");
  c.mutable_machine_config()->set_huge_pages("None");
  c.mutable_machine_config()->set_cpu_template("T2");
  ExpectInvalid(c, "machine_config.cpu_template", absl::StatusCode::kUnimplemented);
  c.mutable_machine_config()->set_cpu_template("Bogus");
  ExpectInvalid(c, "machine_config.cpu_template: \"Bogus\"");
}

TEST(Validate, BootArgs) {
  v1::VmConfig c = Minimal();
  c.mutable_boot_source()->set_boot_args(std::string(kMaxBootArgsLength + 1, 'a'));
  ExpectInvalid(c, "boot_source.boot_args: is");
  c.mutable_boot_source()->set_boot_args("console=ttyS0\n");
  ExpectInvalid(c, "boot_source.boot_args: contains a control character");
}

TEST(Validate, Drives) {
  v1::VmConfig c = Minimal();
  v1::Drive* d = c.add_drives();
  d->set_drive_id("root");
  d->set_path_on_host("/images/rootfs.ext4");
  d->set_is_root_device(true);
  EXPECT_TRUE(ValidateVmConfig(c, true).ok());
  v1::Drive* e = c.add_drives();
  *e = *d;
  ExpectInvalid(c, "drives[1].drive_id: \"root\" is used by another drive");
  e->set_drive_id("data");
  ExpectInvalid(c, "drives[1].is_root_device: only one drive");
  e->set_is_root_device(false);
  e->set_drive_id("bad id!");
  ExpectInvalid(c, "drives[1].drive_id:");
  e->set_drive_id("data");
  e->set_cache_type("Sometimes");
  ExpectInvalid(c, "drives[1].cache_type");
  e->set_cache_type("Writeback");
  e->set_io_engine("Async");
  ExpectInvalid(c, "drives[1].io_engine", absl::StatusCode::kUnimplemented);
  e->set_io_engine("Sync");
  e->mutable_rate_limiter()->mutable_bandwidth()->set_size(-1);
  ExpectInvalid(c, "drives[1].rate_limiter.bandwidth.size: must be >= 0");
  e->mutable_rate_limiter()->mutable_bandwidth()->set_size(1);
  e->set_partuuid("abc");
  ExpectInvalid(c, "drives[1].partuuid: is only meaningful for the root device");
  e->clear_partuuid();
  e->clear_path_on_host();
  ExpectInvalid(c, "drives[1].path_on_host: is required");
}

TEST(Validate, NetworkInterfaces) {
  v1::VmConfig c = Minimal();
  v1::NetworkInterface* n = c.add_network_interfaces();
  n->set_iface_id("eth0");
  n->set_host_dev_name("tap0");
  n->set_guest_mac("06:00:ac:10:00:02");
  EXPECT_TRUE(ValidateVmConfig(c, true).ok());
  n->set_guest_mac("07:00:ac:10:00:02");
  ExpectInvalid(c, "network_interfaces[0].guest_mac: must be a unicast address");
  n->set_guest_mac("06:00:ac:10:00");
  ExpectInvalid(c, "network_interfaces[0].guest_mac:");
  n->set_guest_mac("");
  n->set_host_dev_name("a-very-long-tap-name");
  ExpectInvalid(c, "network_interfaces[0].host_dev_name:");
  n->set_host_dev_name("tap0");
  n->set_mtu(10);
  ExpectInvalid(c, "network_interfaces[0].mtu: must be 68..65535");
  n->clear_mtu();
  v1::NetworkInterface* m = c.add_network_interfaces();
  *m = *n;
  m->set_iface_id("eth1");
  ExpectInvalid(c, "network_interfaces[1].host_dev_name: \"tap0\" is used");
}

TEST(Validate, OtherDevices) {
  v1::VmConfig c = Minimal();
  c.mutable_vsock()->set_guest_cid(2);
  c.mutable_vsock()->set_uds_path("/run/v.sock");
  ExpectInvalid(c, "vsock.guest_cid: must be >= 3");
  c.mutable_vsock()->set_guest_cid(3);
  EXPECT_TRUE(ValidateVmConfig(c, true).ok());
  c.mutable_balloon()->set_amount_mib(500);
  ExpectInvalid(c, "balloon.amount_mib: 500 MiB is more than the guest's 128 MiB");
  c.mutable_balloon()->set_amount_mib(10);
  c.mutable_logger()->set_level("Chatty");
  ExpectInvalid(c, "logger.level");
  c.mutable_logger()->set_level("Debug");
  c.mutable_mmds_config()->add_network_interfaces("eth9");
  ExpectInvalid(c, "mmds_config.network_interfaces: \"eth9\" is not a configured");
  c.clear_mmds_config();
  c.add_pmem()->set_id("p");
  ExpectInvalid(c, "pmem", absl::StatusCode::kUnimplemented);
}

TEST(Validate, Ids) {
  EXPECT_TRUE(ValidateId("vm_id", "vm-1_A").ok());
  EXPECT_FALSE(ValidateId("vm_id", "").ok());
  EXPECT_FALSE(ValidateId("vm_id", std::string(65, 'a')).ok());
  EXPECT_FALSE(ValidateId("vm_id", "../etc").ok());
  EXPECT_NE(ValidateId("vm_id", "a b").message().find("vm_id:"), absl::string_view::npos);
}

TEST(Validate, Mac) {
  auto mac = ParseMac("06:00:AC:10:00:02");
  ASSERT_TRUE(mac.has_value());
  EXPECT_EQ((*mac)[2], 0xac);
  EXPECT_FALSE(ParseMac("06:00:ac:10:00:0g").has_value());
  EXPECT_FALSE(ParseMac("0600ac100002").has_value());
  EXPECT_FALSE(ParseMac("06:00:ac:10:00:002").has_value());
}

TEST(ParseVmConfigJson, FirecrackerConfigFile) {
  auto c = ParseVmConfigJson(R"({
    "boot-source": {"kernel_image_path": "vmlinux", "boot_args": "console=ttyS0"},
    "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false},
    "drives": [{"drive_id": "rootfs", "path_on_host": "rootfs.ext4",
                "is_root_device": true, "is_read_only": false}]
  })");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->machine_config().vcpu_count(), 2u);
  EXPECT_EQ(c->drives(0).drive_id(), "rootfs");
  auto bad = ParseVmConfigJson(R"({"machine-config": {"vcpus": 2}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("vcpus"), absl::string_view::npos) << bad.status();
}

}  // namespace
}  // namespace hearth::api
