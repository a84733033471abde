// VmManager in-process: the start path, the phase rules as the manager
// applies them, post-boot calls and their deadlines.
#include <sys/stat.h>

#include "agent/testing/manager_harness.h"
#include "agent/vm_manager.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;
using testing::ManagerHarness;

absl::StatusOr<api::Vm> Patch(ManagerHarness& h, const std::string& state) {
  return h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().SetVmState("vm1", state, done); });
}

TEST(VmRuntime, PauseAndResume) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  EXPECT_EQ(Patch(h, "Paused")->state(), api::VM_STATE_PAUSED);
  EXPECT_EQ(Patch(h, "Paused")->state(), api::VM_STATE_PAUSED);  // already there: no call
  EXPECT_EQ(h.host().Vmm("vm1")->count(control::Request::kPause), 1);
  EXPECT_EQ(Patch(h, "Resumed")->state(), api::VM_STATE_RUNNING);
  EXPECT_EQ(Patch(h, "Stopped").status().message(),
            "vm_state.state: \"Stopped\" is not one of Paused, Resumed");
}

TEST(VmRuntime, PhaseRulesAsTheManagerAppliesThem) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", false).ok());
  EXPECT_EQ(Patch(h, "Paused").status().message(),
            "PatchVm Paused: vm \"vm1\" is CONFIGURING (allowed in RUNNING)");
  absl::StatusOr<bool> cad =
      h.Await<bool>([&](Done<bool> done) { h.manager().SendCtrlAltDel("vm1", done); });
  EXPECT_EQ(cad.status().code(), absl::StatusCode::kFailedPrecondition);
  api::SnapshotCreateParams params;
  params.set_snapshot_path(h.image_root() + "/s");
  params.set_mem_file_path(h.image_root() + "/m");
  absl::StatusOr<api::CreateSnapshotResponse> snap =
      h.Await<api::CreateSnapshotResponse>([&](Done<api::CreateSnapshotResponse> done) {
        h.manager().CreateSnapshot("vm1", params, done);
      });
  EXPECT_EQ(snap.status().message(),
            "CreateSnapshot: vm \"vm1\" is CONFIGURING (allowed in PAUSED)");
  absl::StatusOr<api::Vm> missing =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("nope", done); });
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  // None of it reached the VMM.
  EXPECT_TRUE(h.host().Vmm("vm1")->received().empty());
}

TEST(VmRuntime, StartWithoutBootSourceIsRefused) {
  ManagerHarness h;
  api::CreateVmRequest request = h.CreateRequest("vm1", false);
  request.mutable_config()->clear_boot_source();
  ASSERT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); }).ok());
  absl::StatusOr<api::Vm> started =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("vm1", done); });
  EXPECT_EQ(started.status().message(),
            "InstanceStart: vm \"vm1\" has no boot_source (PutBootSource first)");
}

TEST(VmRuntime, BootRefusedByTheVmmFailsTheVmAndEndsTheVmm) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", false).ok());
  h.host().Vmm("vm1")->FailNext(
      control::Request::kBoot,
      absl::InvalidArgumentError("kernel: neither an ELF file nor a bzImage"));
  absl::StatusOr<api::Vm> started =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("vm1", done); });
  EXPECT_EQ(started.status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_FAILED));
  EXPECT_NE(h.manager().GetVm("vm1")->status().reason().find("boot failed: kernel"),
            std::string::npos);
  EXPECT_TRUE(ManagerHarness::WaitFor([&] { return h.host().Vmm("vm1")->exited(); }));
  // The VMM's end (killed by the agent) adds its exit, not a new reason.
  ASSERT_TRUE(ManagerHarness::WaitFor(
      [&] { return h.manager().GetVm("vm1")->status().exit().signal() == 9; }));
  EXPECT_NE(h.manager().GetVm("vm1")->status().reason().find("boot failed: kernel"),
            std::string::npos);
}

TEST(VmRuntime, CgroupFailureKeepsTheVmConfiguring) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", false).ok());
  h.host().FailNextLimits(absl::PermissionDeniedError("setting the VM's cgroup limits: EACCES"));
  absl::StatusOr<api::Vm> started =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("vm1", done); });
  EXPECT_EQ(started.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(h.manager().GetVm("vm1")->state(), api::VM_STATE_CONFIGURING);
  EXPECT_EQ(h.host().Vmm("vm1")->count(control::Request::kBoot), 0);
  // Fixed, the start goes through.
  EXPECT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("vm1", done); }).ok());
}

TEST(VmRuntime, AVmmThatDoesNotAnswerMissesTheDeadline) {
  ManagerOptions options = ManagerHarness::DefaultOptions();
  options.call_timeout = absl::Milliseconds(200);
  ManagerHarness h(options);
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.host().Vmm("vm1")->Hang(control::Request::kPause);
  absl::StatusOr<api::Vm> paused = Patch(h, "Paused");
  EXPECT_EQ(paused.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(paused.status().message().find("did not answer in time"), absl::string_view::npos);
  EXPECT_EQ(h.manager().GetVm("vm1")->state(), api::VM_STATE_RUNNING);
  // The VMM answers other calls; a force delete stops it.
  EXPECT_TRUE(h.Await<std::string>([&](Done<std::string> done) {
                 h.manager().FlushMetrics("vm1", done);
               }).ok());
  EXPECT_TRUE(*h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("vm1", true, done); }));
}

TEST(VmRuntime, AVmmThatDiesMidCallAnswersEveryWaiter) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.host().Vmm("vm1")->Hang(control::Request::kPause);
  absl::Notification answered;
  absl::Status status;
  h.manager().SetVmState("vm1", "Paused", [&](absl::StatusOr<api::Vm> r) {
    status = r.status();
    answered.Notify();
  });
  ASSERT_TRUE(ManagerHarness::WaitFor(
      [&] { return h.host().Vmm("vm1")->count(control::Request::kPause) == 1; }));
  h.host().Vmm("vm1")->Kill();
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("the VMM exited"), absl::string_view::npos);
}

TEST(VmRuntime, MetricsPatchesAndBalloon) {
  ManagerHarness h;
  api::CreateVmRequest request = h.CreateRequest("vm1", true);
  api::Drive* drive = request.mutable_config()->add_drives();
  drive->set_drive_id("root");
  drive->set_path_on_host(h.kernel());
  drive->set_is_root_device(true);
  drive->set_is_read_only(true);
  request.mutable_config()->mutable_balloon()->set_amount_mib(0);
  request.mutable_config()->mutable_balloon()->set_stats_polling_interval_s(1);
  ASSERT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); }).ok());
  absl::StatusOr<std::string> metrics =
      h.Await<std::string>([&](Done<std::string> done) { h.manager().FlushMetrics("vm1", done); });
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(h.manager().LastMetrics().at("vm1"), *metrics);

  api::PartialDrive patch;
  patch.set_drive_id("root");
  patch.mutable_rate_limiter()->mutable_ops()->set_size(100);
  patch.mutable_rate_limiter()->mutable_ops()->set_refill_time(1000);
  absl::StatusOr<api::Drive> patched = h.Await<api::Drive>(
      [&](Done<api::Drive> done) { h.manager().PatchDrive(patch, "vm1", done); });
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ(h.manager().GetConfig("vm1")->drives(0).rate_limiter().ops().size(), 100);
  patch.set_drive_id("data");
  EXPECT_EQ(h.Await<api::Drive>(
                 [&](Done<api::Drive> done) { h.manager().PatchDrive(patch, "vm1", done); })
                .status()
                .message(),
            "drive \"data\" not found");

  absl::StatusOr<api::Balloon> balloon = h.Await<api::Balloon>(
      [&](Done<api::Balloon> done) { h.manager().PatchBalloon("vm1", 64, done); });
  ASSERT_TRUE(balloon.ok());
  EXPECT_EQ(balloon->amount_mib(), 64u);
  EXPECT_TRUE(h.Await<api::BalloonStatistics>([&](Done<api::BalloonStatistics> done) {
                 h.manager().GetBalloonStatistics("vm1", done);
               }).ok());
}

}  // namespace
}  // namespace hearth::agent

namespace hearth::agent {
namespace {

TEST(VmRuntimeVsock, TwoVmsCannotShareASocketAndDeleteRemovesItAfterARestart) {
  ManagerHarness h;
  auto with_vsock = [&](const std::string& id) {
    api::CreateVmRequest request = h.CreateRequest(id, false);
    request.mutable_config()->mutable_vsock()->set_guest_cid(3);
    request.mutable_config()->mutable_vsock()->set_uds_path(h.image_root() + "/v.sock");
    return h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); });
  };
  absl::StatusOr<api::Vm> a = with_vsock("a");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(with_vsock("b").ok());
  absl::StatusOr<api::Vm> started =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("a", done); });
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string socket = h.image_root() + "/v.sock";
  struct stat before;
  ASSERT_EQ(::lstat(socket.c_str(), &before), 0);
  absl::StatusOr<api::Vm> second =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("b", done); });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("is used by vm \"a\""), absl::string_view::npos);
  struct stat after;
  ASSERT_EQ(::lstat(socket.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);  // a's live socket was not replaced
  // After an agent restart, deleting a still removes its socket.
  h.Restart();
  ASSERT_TRUE(h.WaitForState("a", api::VM_STATE_RUNNING));
  ASSERT_TRUE(*h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("a", true, done); }));
  EXPECT_NE(::lstat(socket.c_str(), &after), 0);
}

}  // namespace
}  // namespace hearth::agent
