#include "agent/restore_plan.h"

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;

api::VmConfig SavedVm() {
  api::VmConfig spec;
  spec.mutable_machine_config()->set_vcpu_count(2);
  spec.mutable_machine_config()->set_mem_size_mib(256);
  spec.mutable_boot_source()->set_kernel_image_path("/img/vmlinux");
  api::Drive* drive = spec.add_drives();
  drive->set_drive_id("root");
  drive->set_path_on_host("/img/root.ext4");
  drive->set_is_root_device(true);
  api::NetworkInterface* iface = spec.add_network_interfaces();
  iface->set_iface_id("eth0");
  iface->set_host_dev_name("tap0");
  spec.mutable_vsock()->set_guest_cid(3);
  spec.mutable_vsock()->set_uds_path("/img/v.sock");
  return spec;
}

api::SnapshotLoadParams Params() {
  api::SnapshotLoadParams params;
  params.set_snapshot_path("/img/vm.snap");
  params.mutable_mem_backend()->set_backend_type("File");
  params.mutable_mem_backend()->set_backend_path("/img/vm.mem");
  return params;
}

TEST(MemoryPath, ExactlyOneSource) {
  api::MemoryBackend backend;
  backend.set_backend_type("File");
  backend.set_backend_path("/m");
  EXPECT_EQ(*MemoryPath(&backend, true, "", "params"), "/m");
  EXPECT_EQ(*MemoryPath(&backend, false, "/old", "params"), "/old");
  EXPECT_EQ(MemoryPath(&backend, true, "/old", "params").status().message(),
            "params: set mem_backend or mem_file_path, not both");
  EXPECT_EQ(MemoryPath(&backend, false, "", "params").status().message(),
            "params.mem_backend: required");
  backend.set_backend_type("Uffd");
  EXPECT_EQ(MemoryPath(&backend, true, "", "p").status().code(), absl::StatusCode::kUnimplemented);
  backend.set_backend_type("Disk");
  EXPECT_EQ(MemoryPath(&backend, true, "", "p").status().message(),
            "p.mem_backend.backend_type: \"Disk\" is not one of File, Uffd");
  backend.set_backend_type("File");
  backend.clear_backend_path();
  EXPECT_EQ(MemoryPath(&backend, true, "", "p").status().message(),
            "p.mem_backend.backend_path: required");
}

TEST(CheckLoadParams, Fields) {
  EXPECT_EQ(*CheckLoadParams(Params()), "/img/vm.mem");
  api::SnapshotLoadParams params = Params();
  params.clear_snapshot_path();
  EXPECT_EQ(CheckLoadParams(params).status().message(), "params.snapshot_path: required");
  params = Params();
  params.set_huge_pages("2M");
  EXPECT_EQ(CheckLoadParams(params).status().code(), absl::StatusCode::kUnimplemented);
  params.set_huge_pages("None");
  EXPECT_TRUE(CheckLoadParams(params).ok());
}

TEST(OnlyLoggerAndMetrics, WhatMayPrecedeALoad) {
  api::VmConfig spec;
  EXPECT_TRUE(OnlyLoggerAndMetrics(spec));
  spec.mutable_logger()->set_log_path("/img/log");
  spec.mutable_metrics()->set_metrics_path("/img/metrics");
  spec.mutable_machine_config()->set_vcpu_count(1);
  EXPECT_TRUE(OnlyLoggerAndMetrics(spec));
  spec.mutable_boot_source()->set_kernel_image_path("/k");
  EXPECT_FALSE(OnlyLoggerAndMetrics(spec));
}

TEST(PlanRestore, SnapshotConfigWithOverrides) {
  api::SnapshotLoadParams params = Params();
  api::NetworkOverride* net = params.add_network_overrides();
  net->set_iface_id("eth0");
  net->set_host_dev_name("tap7");
  params.mutable_vsock_override()->set_uds_path("/img/other.sock");
  params.set_track_dirty_pages(true);
  api::DriveOverride drive;
  drive.set_drive_id("root");
  drive.set_path_on_host("/img/clone.ext4");
  api::VmConfig previous;
  previous.mutable_logger()->set_log_path("/img/log");
  previous.mutable_metrics()->set_metrics_path("/img/metrics");

  absl::StatusOr<api::VmConfig> spec = PlanRestore(SavedVm(), params, {drive}, previous);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->network_interfaces(0).host_dev_name(), "tap7");
  EXPECT_EQ(spec->vsock().uds_path(), "/img/other.sock");
  EXPECT_EQ(spec->drives(0).path_on_host(), "/img/clone.ext4");
  EXPECT_EQ(spec->logger().log_path(), "/img/log");
  EXPECT_EQ(spec->metrics().metrics_path(), "/img/metrics");
  EXPECT_TRUE(spec->machine_config().track_dirty_pages());
  EXPECT_EQ(spec->machine_config().vcpu_count(), 2u);
}

TEST(PlanRestore, TrackingFollowsTheLoadNotTheSnapshot) {
  api::VmConfig saved = SavedVm();
  saved.mutable_machine_config()->set_track_dirty_pages(true);
  absl::StatusOr<api::VmConfig> spec = PlanRestore(saved, Params(), {}, {});
  ASSERT_TRUE(spec.ok());
  EXPECT_FALSE(spec->machine_config().track_dirty_pages());
  api::SnapshotLoadParams params = Params();
  params.set_enable_diff_snapshots(true);
  EXPECT_TRUE(PlanRestore(saved, params, {}, {})->machine_config().track_dirty_pages());
}

TEST(PlanRestore, OverridesThatMatchNothing) {
  api::SnapshotLoadParams params = Params();
  params.add_network_overrides()->set_iface_id("eth9");
  EXPECT_EQ(PlanRestore(SavedVm(), params, {}, {}).status().message(),
            "params.network_overrides[0].iface_id: the snapshot has no interface \"eth9\"");

  api::VmConfig no_vsock = SavedVm();
  no_vsock.clear_vsock();
  params = Params();
  params.mutable_vsock_override()->set_uds_path("/x");
  EXPECT_EQ(PlanRestore(no_vsock, params, {}, {}).status().message(),
            "params.vsock_override: the snapshot has no vsock device");

  api::DriveOverride drive;
  drive.set_drive_id("data");
  EXPECT_EQ(PlanRestore(SavedVm(), Params(), {drive}, {}).status().message(),
            "drive_overrides[0].drive_id: the snapshot has no drive \"data\"");
}

TEST(PlanRestore, TheResultIsValidated) {
  api::VmConfig saved = SavedVm();
  saved.mutable_machine_config()->set_vcpu_count(0);
  absl::Status status = PlanRestore(saved, Params(), {}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("vcpu_count"), absl::string_view::npos) << status;
}

api::CloneVmRequest Clones(int n) {
  api::CloneVmRequest request;
  request.set_snapshot_path("/img/vm.snap");
  request.mutable_mem_backend()->set_backend_type("File");
  request.mutable_mem_backend()->set_backend_path("/img/vm.mem");
  for (int i = 0; i < n; ++i) request.add_clones()->set_vm_id("c" + std::to_string(i));
  return request;
}

TEST(CheckCloneRequest, Fields) {
  EXPECT_TRUE(CheckCloneRequest(Clones(1)).ok());
  EXPECT_TRUE(CheckCloneRequest(Clones(64)).ok());
  EXPECT_EQ(CheckCloneRequest(Clones(0)).message(), "clones: 1 to 64 clones per request, got 0");
  EXPECT_EQ(CheckCloneRequest(Clones(65)).message(), "clones: 1 to 64 clones per request, got 65");
  api::CloneVmRequest request = Clones(2);
  request.mutable_clones(1)->set_vm_id("c0");
  EXPECT_EQ(CheckCloneRequest(request).message(), "clones[1].vm_id: \"c0\" appears twice");
  request = Clones(2);
  request.mutable_clones(1)->set_vm_id("bad id");
  EXPECT_NE(CheckCloneRequest(request).message().find("clones[1].vm_id"), absl::string_view::npos);
  request = Clones(1);
  request.clear_snapshot_path();
  EXPECT_EQ(CheckCloneRequest(request).message(), "snapshot_path: required");
  request = Clones(1);
  request.clear_mem_backend();
  EXPECT_EQ(CheckCloneRequest(request).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CloneKey, SameRequestSameKey) {
  api::CloneVmRequest a = Clones(2);
  api::CloneVmRequest b = Clones(2);
  EXPECT_EQ(CloneKey(a, a.clones(0)), CloneKey(b, b.clones(0)));
  EXPECT_NE(CloneKey(a, a.clones(0)), CloneKey(a, a.clones(1)));
  b.set_snapshot_path("/img/other.snap");
  EXPECT_NE(CloneKey(a, a.clones(0)), CloneKey(b, b.clones(0)));
}

TEST(CloneLoadParams, CarriesTheClonesOverrides) {
  api::CloneVmRequest request = Clones(1);
  request.set_track_dirty_pages(true);
  api::CloneSpec* clone = request.mutable_clones(0);
  clone->set_resume_vm(true);
  clone->add_network_overrides()->set_iface_id("eth0");
  clone->mutable_vsock_override()->set_uds_path("/img/c0.sock");
  api::SnapshotLoadParams params = CloneLoadParams(request, *clone);
  EXPECT_EQ(params.snapshot_path(), "/img/vm.snap");
  EXPECT_EQ(params.mem_backend().backend_path(), "/img/vm.mem");
  EXPECT_TRUE(params.track_dirty_pages());
  EXPECT_TRUE(params.resume_vm());
  EXPECT_EQ(params.network_overrides_size(), 1);
  EXPECT_EQ(params.vsock_override().uds_path(), "/img/c0.sock");
}

}  // namespace
}  // namespace hearth::agent
