// VmManager in-process: CreateSnapshot, LoadSnapshot and CloneVm, and the
// all-or-nothing rollback of clones.
#include <dirent.h>
#include <fcntl.h>

#include <fstream>
#include <iterator>
#include <string>

#include "agent/testing/manager_harness.h"
#include "agent/vm_manager.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "vmm/snapshot/format.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;
using testing::ManagerHarness;

// A state file whose saved VM is a 1-vCPU, 128 MiB guest, and a memory file.
void WriteSnapshot(const ManagerHarness& h) {
  vmm::v1::VmSnapshot snapshot;
  api::VmConfig* config = snapshot.mutable_config();
  config->mutable_boot_source()->set_kernel_image_path(h.kernel());
  config->mutable_machine_config()->set_vcpu_count(1);
  config->mutable_machine_config()->set_mem_size_mib(128);
  UniqueFd state(::open((h.image_root() + "/vm.snap").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
  ASSERT_TRUE(state.valid());
  ASSERT_TRUE(snapshot::WriteStateFile(state.get(), snapshot).ok());
  UniqueFd memory(::open((h.image_root() + "/vm.mem").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
  ASSERT_TRUE(memory.valid());
}

api::SnapshotLoadParams LoadParams(const ManagerHarness& h, bool resume) {
  api::SnapshotLoadParams params;
  params.set_snapshot_path(h.image_root() + "/vm.snap");
  params.mutable_mem_backend()->set_backend_type("File");
  params.mutable_mem_backend()->set_backend_path(h.image_root() + "/vm.mem");
  params.set_resume_vm(resume);
  return params;
}

api::CloneVmRequest Clones(const ManagerHarness& h, int n) {
  api::CloneVmRequest request;
  request.set_snapshot_path(h.image_root() + "/vm.snap");
  request.mutable_mem_backend()->set_backend_type("File");
  request.mutable_mem_backend()->set_backend_path(h.image_root() + "/vm.mem");
  for (int i = 0; i < n; ++i) {
    api::CloneSpec* clone = request.add_clones();
    clone->set_vm_id("c" + std::to_string(i));
    clone->set_resume_vm(true);
  }
  return request;
}

TEST(VmSnapshots, CreateSnapshotOfAPausedVm) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  ASSERT_TRUE(h.Await<api::Vm>([&](Done<api::Vm> done) {
                 h.manager().SetVmState("vm1", "Paused", done);
               }).ok());
  api::SnapshotCreateParams params;
  params.set_snapshot_path(h.image_root() + "/s");
  params.set_mem_file_path(h.image_root() + "/m");
  absl::StatusOr<api::CreateSnapshotResponse> made =
      h.Await<api::CreateSnapshotResponse>([&](Done<api::CreateSnapshotResponse> done) {
        h.manager().CreateSnapshot("vm1", params, done);
      });
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->memory_bytes(), 4096u);
  params.set_snapshot_type("Diff");
  EXPECT_EQ(h.Await<api::CreateSnapshotResponse>([&](Done<api::CreateSnapshotResponse> done) {
               h.manager().CreateSnapshot("vm1", params, done);
             })
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);  // no dirty-page tracking
  params.set_snapshot_path("/etc/outside");
  params.set_snapshot_type("Full");
  EXPECT_EQ(h.Await<api::CreateSnapshotResponse>([&](Done<api::CreateSnapshotResponse> done) {
               h.manager().CreateSnapshot("vm1", params, done);
             })
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);  // outside the image roots
}

TEST(VmSnapshots, AFailedSnapshotLeavesTheOldOneInPlace) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  ASSERT_TRUE(h.Await<api::Vm>([&](Done<api::Vm> done) {
                 h.manager().SetVmState("vm1", "Paused", done);
               }).ok());
  std::ofstream(h.image_root() + "/s") << "old state";
  std::ofstream(h.image_root() + "/m") << "old memory";
  api::SnapshotCreateParams params;
  params.set_snapshot_path(h.image_root() + "/s");
  params.set_mem_file_path(h.image_root() + "/m");
  auto snapshot = [&] {
    return h.Await<api::CreateSnapshotResponse>([&](Done<api::CreateSnapshotResponse> done) {
      h.manager().CreateSnapshot("vm1", params, done);
    });
  };
  auto read = [&](const std::string& name) {
    std::ifstream in(h.image_root() + "/" + name);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  auto temporaries = [&] {
    int n = 0;
    DIR* d = ::opendir(h.image_root().c_str());
    while (struct dirent* e = ::readdir(d))
      n += std::string(e->d_name).find("hearth-tmp") != std::string::npos;
    ::closedir(d);
    return n;
  };
  // The VMM dies half way (here: answers an error): the old snapshot stays.
  h.host().Vmm("vm1")->FailNext(control::Request::kCreateSnapshot,
                                absl::InternalError("write: No space left on device"));
  EXPECT_EQ(snapshot().status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(read("s"), "old state");
  EXPECT_EQ(read("m"), "old memory");
  EXPECT_EQ(temporaries(), 0);
  // A complete one replaces it (the fake VMM writes nothing: empty files).
  ASSERT_TRUE(snapshot().ok());
  EXPECT_EQ(read("s"), "");
  EXPECT_EQ(read("m"), "");
  EXPECT_EQ(temporaries(), 0);
}

TEST(VmSnapshots, OneSnapshotAtATimeToAPath) {
  ManagerHarness h;
  for (const char* id : {"a", "b"}) {
    ASSERT_TRUE(h.Create(id, true).ok());
    ASSERT_TRUE(h.Await<api::Vm>([&](Done<api::Vm> done) {
                   h.manager().SetVmState(id, "Paused", done);
                 }).ok());
  }
  api::SnapshotCreateParams params;
  params.set_snapshot_path(h.image_root() + "/s");
  params.set_mem_file_path(h.image_root() + "/m");
  h.host().Vmm("a")->Hang(control::Request::kCreateSnapshot);
  h.manager().CreateSnapshot("a", params, [](absl::StatusOr<api::CreateSnapshotResponse>) {});
  ASSERT_TRUE(ManagerHarness::WaitFor(
      [&] { return h.host().Vmm("a")->count(control::Request::kCreateSnapshot) == 1; }));
  absl::StatusOr<api::CreateSnapshotResponse> second =
      h.Await<api::CreateSnapshotResponse>([&](Done<api::CreateSnapshotResponse> done) {
        h.manager().CreateSnapshot("b", params, done);
      });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("is being written"), absl::string_view::npos);
}

TEST(VmSnapshots, LoadIntoAFreshVm) {
  ManagerHarness h;
  WriteSnapshot(h);
  api::CreateVmRequest request = h.CreateRequest("vm1", false);
  request.clear_config();
  ASSERT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); }).ok());
  absl::StatusOr<api::Vm> loaded = h.Await<api::Vm>(
      [&](Done<api::Vm> done) { h.manager().LoadSnapshot("vm1", LoadParams(h, false), done); });
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->state(), api::VM_STATE_PAUSED);
  EXPECT_EQ(loaded->spec().boot_source().kernel_image_path(), h.kernel());
  // A second load is refused by the phase table.
  EXPECT_EQ(h.Await<api::Vm>([&](Done<api::Vm> done) {
               h.manager().LoadSnapshot("vm1", LoadParams(h, false), done);
             })
                .status()
                .message(),
            "LoadSnapshot: vm \"vm1\" is PAUSED (allowed in CONFIGURING)");
}

TEST(VmSnapshots, ALoadTheVmmRefusesLeavesTheVmAsItWas) {
  ManagerHarness h;
  WriteSnapshot(h);
  api::CreateVmRequest request = h.CreateRequest("vm1", false);
  request.clear_config();
  ASSERT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); }).ok());
  h.host().Vmm("vm1")->FailNext(control::Request::kLoadSnapshot,
                                absl::InvalidArgumentError("snapshot: bad magic"));
  absl::StatusOr<api::Vm> loaded = h.Await<api::Vm>(
      [&](Done<api::Vm> done) { h.manager().LoadSnapshot("vm1", LoadParams(h, true), done); });
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  api::Vm vm = *h.manager().GetVm("vm1");
  EXPECT_EQ(vm.state(), api::VM_STATE_CONFIGURING);
  EXPECT_FALSE(vm.spec().has_boot_source());  // the snapshot's spec was not kept
  EXPECT_TRUE(h.Await<api::Vm>([&](Done<api::Vm> done) {
                 h.manager().LoadSnapshot("vm1", LoadParams(h, true), done);
               }).ok());
}

TEST(VmSnapshots, ClonesAreCreatedAndARepeatFindsThem) {
  ManagerHarness h;
  WriteSnapshot(h);
  api::CloneVmRequest request = Clones(h, 3);
  absl::StatusOr<api::CloneVmResponse> cloned = h.Await<api::CloneVmResponse>(
      [&](Done<api::CloneVmResponse> done) { h.manager().CloneVm(request, done); });
  ASSERT_TRUE(cloned.ok()) << cloned.status();
  ASSERT_EQ(cloned->vms_size(), 3);
  for (const api::Vm& vm : cloned->vms()) EXPECT_EQ(vm.state(), api::VM_STATE_RUNNING);
  cloned = h.Await<api::CloneVmResponse>(
      [&](Done<api::CloneVmResponse> done) { h.manager().CloneVm(request, done); });
  ASSERT_TRUE(cloned.ok());
  EXPECT_EQ(h.host().All().size(), 3u);  // nothing new was started
}

TEST(VmSnapshots, CloneIsAllOrNothingWhenTheKthCloneFails) {
  ManagerHarness h;
  WriteSnapshot(h);
  for (int k = 0; k < 3; ++k) {
    const std::string victim = "c" + std::to_string(k);
    h.host().FailNextSpawn(absl::ResourceExhaustedError("out of uids"), victim);
    absl::StatusOr<api::CloneVmResponse> cloned = h.Await<api::CloneVmResponse>(
        [&](Done<api::CloneVmResponse> done) { h.manager().CloneVm(Clones(h, 3), done); });
    EXPECT_EQ(cloned.status().code(), absl::StatusCode::kInternal) << k;
    EXPECT_NE(cloned.status().message().find("clones[" + std::to_string(k) + "]"),
              absl::string_view::npos)
        << cloned.status();
    // By the time the error is answered, no clone is left.
    absl::StatusOr<api::ListVmsResponse> list = h.manager().ListVms(api::ListVmsRequest());
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(list->vms_size(), 0) << "after a failure of clone " << k;
    EXPECT_EQ(h.host().Live(), 0);
  }
  // A failed restore of one clone rolls back all of them too.
  h.host().FailNextSpawn(absl::OkStatus(), "none");
  absl::StatusOr<api::CloneVmResponse> cloned = h.Await<api::CloneVmResponse>(
      [&](Done<api::CloneVmResponse> done) { h.manager().CloneVm(Clones(h, 1), done); });
  ASSERT_TRUE(cloned.ok()) << cloned.status();
}

TEST(VmSnapshots, CloneAdmissionCountsEveryClone) {
  ManagerOptions options = ManagerHarness::DefaultOptions();
  options.max_vms = 2;
  ManagerHarness h(options);
  WriteSnapshot(h);
  absl::StatusOr<api::CloneVmResponse> cloned = h.Await<api::CloneVmResponse>(
      [&](Done<api::CloneVmResponse> done) { h.manager().CloneVm(Clones(h, 3), done); });
  EXPECT_EQ(cloned.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cloned.status().message(), "3 clones: the host runs its maximum of 2 VMs");
  EXPECT_TRUE(h.host().All().empty());
}

}  // namespace
}  // namespace hearth::agent
