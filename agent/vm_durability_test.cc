// VmManager in-process: durable before OK, intent before action. A full
// state directory (injected where the disk would fail), and records left
// by an agent that died between saving its intent and saving its VMM.
#include <fcntl.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "agent/state_store.h"
#include "agent/testing/manager_harness.h"
#include "agent/vm_manager.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace state = ::hearth::agent::v1;
using testing::ManagerHarness;

// What a restarted agent would load for `vm_id` (nullopt: no record).
std::optional<state::VmRecord> SavedRecord(const ManagerHarness& h, const std::string& vm_id) {
  absl::StatusOr<StateStore> store = StateStore::Open(h.state_dir());
  if (!store.ok()) return std::nullopt;
  std::vector<std::string> skipped;
  for (state::VmRecord& record : store->LoadVms(&skipped)) {
    if (record.vm().vm_id() == vm_id) return record;
  }
  return std::nullopt;
}

bool RecordExists(const ManagerHarness& h, const std::string& vm_id) {
  return ::access((h.state_dir() + "/vms/" + vm_id + ".rec").c_str(), F_OK) == 0;
}

TEST(VmDurability, AFullDiskRefusesACreateAndStartsNothing) {
  ManagerHarness h;
  h.SetDiskFull([](const std::string&) { return true; });
  absl::StatusOr<api::Vm> vm = h.Create("vm1", true);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), h.state_dir())) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "No space left on device"));
  EXPECT_TRUE(h.host().All().empty());  // nothing was started
  EXPECT_EQ(h.manager().GetVm("vm1").status().code(), absl::StatusCode::kNotFound);
  // Room again: the same request works.
  h.SetDiskFull(nullptr);
  vm = h.Create("vm1", true);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_TRUE(RecordExists(h, "vm1"));
}

TEST(VmDurability, ADiskThatFillsAfterTheIntentLeavesNothingRunning) {
  ManagerHarness h;
  // The intent record is written; every later write fails.
  int writes = 0;
  h.SetDiskFull([&writes](const std::string& path) {
    return absl::StrContains(path, "vm1.rec") && ++writes > 1;
  });
  absl::StatusOr<api::Vm> vm = h.Create("vm1", false);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kUnavailable) << vm.status();
  // Answered once the VM is gone: no VMM, no VM, no record.
  ASSERT_EQ(h.host().All().size(), 1u);
  EXPECT_EQ(h.host().Live(), 0);
  EXPECT_EQ(h.manager().GetVm("vm1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(RecordExists(h, "vm1"));
}

TEST(VmDurability, AChangeNotSavedIsNotOkAndIsSavedOnceThereIsRoom) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", false).ok());
  h.SetDiskFull([](const std::string&) { return true; });
  absl::StatusOr<api::VmConfig> config = h.Await<api::VmConfig>([&](Done<api::VmConfig> done) {
    h.manager().Configure(
        "vm1",
        [](api::VmConfig* c) {
          c->mutable_machine_config()->set_mem_size_mib(512);
          return absl::OkStatus();
        },
        done);
  });
  EXPECT_EQ(config.status().code(), absl::StatusCode::kUnavailable);
  h.SetDiskFull(nullptr);
  // The next ticks save it; a restarted agent then has it.
  EXPECT_GT(h.failed_writes(), 0);
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    std::optional<state::VmRecord> saved = SavedRecord(h, "vm1");
    return saved.has_value() && saved->vm().spec().machine_config().mem_size_mib() == 512;
  }));
  h.Restart();
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_CONFIGURING));
  EXPECT_EQ(h.manager().GetConfig("vm1")->machine_config().mem_size_mib(), 512u);
}

TEST(VmDurability, VersionsNeverGoBackAcrossAFullDiskAndARestart) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.SetDiskFull([](const std::string&) { return true; });
  for (int i = 0; i < 5; ++i) {
    h.Await<api::Vm>([&](Done<api::Vm> done) {
       h.manager().SetVmState("vm1", i % 2 == 0 ? "Paused" : "Resumed", done);
     }).IgnoreError();
  }
  uint64_t seen = h.manager().ListVms(api::ListVmsRequest())->resource_version();
  h.SetDiskFull(nullptr);
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    std::optional<state::VmRecord> saved = SavedRecord(h, "vm1");
    return saved.has_value() && saved->vm().resource_version() == seen;
  }));
  h.Restart();
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    absl::StatusOr<api::Vm> vm = h.manager().GetVm("vm1");
    return vm.ok() && vm->status().vmm_pid() != 0;
  }));
  EXPECT_GT(h.manager().ListVms(api::ListVmsRequest())->resource_version(), seen);
}

// A record as an agent leaves it when it dies between saving its intent and
// saving the spawned VMM: planned, no pid.
void WriteIntent(const ManagerHarness& h, const std::string& vm_id) {
  state::VmRecord record;
  record.mutable_vm()->set_vm_id(vm_id);
  record.mutable_vm()->set_state(api::VM_STATE_CONFIGURING);
  record.mutable_vm()->mutable_spec()->mutable_machine_config()->set_vcpu_count(1);
  record.mutable_vm()->mutable_spec()->mutable_machine_config()->set_mem_size_mib(128);
  record.set_uid(400007);
  record.set_run_dir("/fake/run/" + vm_id);
  absl::StatusOr<StateStore> store = StateStore::Open(h.state_dir());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->SaveVm(record).ok());
}

TEST(VmDurability, AnIntentRecordAdoptsItsVmmOrIsMarkedFailed) {
  ManagerHarness h;
  h.StopAgent();
  WriteIntent(h, "spawned");
  WriteIntent(h, "never");
  // The dead agent had started "spawned"'s VMM (through the same host).
  {
    testing::FakeLauncher launcher(h.shared_host());
    state::VmRecord record;
    record.mutable_vm()->set_vm_id("spawned");
    launcher.Plan(&record, 400007);
    ASSERT_TRUE(launcher.Spawn(&record).ok());
  }
  h.StartAgent();
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    absl::StatusOr<api::Vm> vm = h.manager().GetVm("spawned");
    return vm.ok() && vm->status().vmm_pid() == h.host().Vmm("spawned")->pid();
  }));
  EXPECT_EQ(h.manager().GetVm("spawned")->state(), api::VM_STATE_CONFIGURING);
  ASSERT_TRUE(h.WaitForState("never", api::VM_STATE_FAILED));
  EXPECT_EQ(h.manager().GetVm("never")->status().reason(),
            "no VMM runs for it (the agent stopped before it recorded one)");
  EXPECT_GE(h.host().released().count("never"), 1u);
  // The adopted VM is served (its intent had no boot source yet), its
  // record now names its VMM, and its uid stays reserved.
  EXPECT_EQ(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("spawned", done); })
          .status()
          .message(),
      "InstanceStart: vm \"spawned\" has no boot_source (PutBootSource first)");
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    std::optional<state::VmRecord> saved = SavedRecord(h, "spawned");
    return saved.has_value() && saved->pid() == h.host().Vmm("spawned")->pid();
  }));
  ASSERT_TRUE(h.Create("next", false).ok());
  EXPECT_NE(h.host().uids().back(), 400007u);
}

}  // namespace
}  // namespace hearth::agent
