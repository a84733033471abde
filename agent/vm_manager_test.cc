// VmManager in-process (fake launcher, fake VMMs): creating, deleting,
// idempotency, admission, watching, and restarts of the agent.
#include "agent/vm_manager.h"

#include <set>
#include <thread>
#include <vector>

#include "agent/testing/manager_harness.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
using testing::ManagerHarness;

TEST(VmManager, CreateIsIdempotentForTheSameSpec) {
  ManagerHarness h;
  absl::StatusOr<api::Vm> first = h.Create("vm1", false);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->state(), api::VM_STATE_CONFIGURING);
  absl::StatusOr<api::Vm> again = h.Create("vm1", false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(h.host().All().size(), 1u);  // one VMM, not two

  api::CreateVmRequest other = h.CreateRequest("vm1", false);
  other.mutable_config()->mutable_machine_config()->set_mem_size_mib(256);
  absl::StatusOr<api::Vm> conflict =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(other, done); });
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(conflict.status().message().find("machine_config.mem_size_mib"),
            absl::string_view::npos)
      << conflict.status();
}

TEST(VmManager, CreateAndStartBoots) {
  ManagerHarness h;
  absl::StatusOr<api::Vm> vm = h.Create("vm1", true);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->state(), api::VM_STATE_RUNNING);
  EXPECT_TRUE(vm->status().has_started_at());
  EXPECT_EQ(h.host().Vmm("vm1")->count(vmm::v1::Request::kBoot), 1);
  // The console carries what the guest printed.
  absl::StatusOr<std::shared_ptr<ConsoleBuffer>> console = h.manager().Console("vm1");
  ASSERT_TRUE(console.ok());
  EXPECT_TRUE(ManagerHarness::WaitFor(
      [&] { return (*console)->Tail(100).find("booted") != std::string::npos; }));
  // A repeat of the same create-and-start answers with the running VM.
  absl::StatusOr<api::Vm> again = h.Create("vm1", true);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state(), api::VM_STATE_RUNNING);
  EXPECT_EQ(h.host().Vmm("vm1")->count(vmm::v1::Request::kBoot), 1);
}

TEST(VmManager, IdenticalCreateAndStartCallsAllGetTheRunningVm) {
  ManagerHarness h;
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<api::Vm>> results(8, absl::UnknownError(""));
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { results[i] = h.Create("vm1", true); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->state(), api::VM_STATE_RUNNING);
  }
  EXPECT_EQ(h.host().All().size(), 1u);
  EXPECT_EQ(h.host().Vmm("vm1")->count(vmm::v1::Request::kBoot), 1);
}

TEST(VmManager, ACreateWhoseStartFailsLeavesNothing) {
  ManagerHarness h;
  h.host().OnSpawn([](testing::FakeVmm& vmm) {
    vmm.FailNext(vmm::v1::Request::kBoot,
                 absl::InvalidArgumentError("machine_config.mem_size_mib: too small to boot"));
  });
  absl::StatusOr<api::Vm> vm = h.Create("vm1", true);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vm.status().message(), "machine_config.mem_size_mib: too small to boot");
  EXPECT_EQ(h.manager().GetVm("vm1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.host().Live(), 0);
  // The corrected request (here: the same, with a VMM that boots) works.
  h.host().OnSpawn(nullptr);
  vm = h.Create("vm1", true);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->state(), api::VM_STATE_RUNNING);
}

TEST(VmManager, InvalidCreatesNameTheField) {
  ManagerHarness h;
  api::CreateVmRequest request = h.CreateRequest("vm1", true);
  request.mutable_config()->mutable_machine_config()->set_vcpu_count(0);
  absl::StatusOr<api::Vm> vm =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); });
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(vm.status().message().find("config.machine_config.vcpu_count"),
            absl::string_view::npos);
  request = h.CreateRequest("vm1", true);
  request.mutable_config()->mutable_boot_source()->set_kernel_image_path("/etc/passwd");
  vm = h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().CreateVm(request, done); });
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kPermissionDenied) << vm.status();
  EXPECT_NE(vm.status().message().find("config.boot_source.kernel_image_path"),
            absl::string_view::npos)
      << vm.status();
  EXPECT_TRUE(h.host().All().empty());  // refused before any VMM was started
  EXPECT_EQ(h.manager().GetVm("vm1").status().code(), absl::StatusCode::kNotFound);
}

TEST(VmManager, AdmissionRefusesBeyondCapacity) {
  ManagerOptions options = ManagerHarness::DefaultOptions();
  options.max_vms = 2;
  ManagerHarness h(options);
  ASSERT_TRUE(h.Create("a", false).ok());
  ASSERT_TRUE(h.Create("b", false).ok());
  absl::StatusOr<api::Vm> c = h.Create("c", false);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(c.status().message(), "the host runs its maximum of 2 VMs");
  EXPECT_EQ(h.manager().GetHostInfo().allocated().vms(), 2u);
  // A deleted VM frees its share.
  ASSERT_TRUE(h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("a", false, done); }).ok());
  EXPECT_TRUE(h.Create("c", false).ok());
}

TEST(VmManager, SpawnFailureLeavesAFailedVmWithTheReason) {
  ManagerHarness h;
  h.host().FailNextSpawn(absl::PermissionDeniedError("no jailer here"));
  absl::StatusOr<api::Vm> vm = h.Create("vm1", false);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInternal);
  absl::StatusOr<api::Vm> got = h.manager().GetVm("vm1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state(), api::VM_STATE_FAILED);
  EXPECT_EQ(got->status().reason(), "could not start the VMM: no jailer here");
}

TEST(VmManager, DeleteRules) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  absl::StatusOr<bool> refused =
      h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("vm1", false, done); });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            "DeleteVm: vm \"vm1\" is RUNNING; stop the guest first (SendCtrlAltDel) or delete "
            "with force");
  // Several forced deletes at once: all answer true, one VMM is killed.
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<bool>> results(4, absl::UnknownError(""));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      results[i] = h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("vm1", true, done); });
    });
  }
  for (auto& t : threads) t.join();
  int deleted = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    deleted += *r;
  }
  EXPECT_GE(deleted, 1);
  EXPECT_TRUE(h.host().Vmm("vm1")->exited());
  EXPECT_EQ(h.manager().GetVm("vm1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.host().removed_run_dirs().count("vm1"), 1u);
  EXPECT_GE(h.host().released().count("vm1"), 1u);
  // Deleting what is not there is not an error.
  absl::StatusOr<bool> missing =
      h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("vm1", false, done); });
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(*missing);
}

TEST(VmManager, EachVmGetsItsOwnUid) {
  ManagerHarness h;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(h.Create(id, false).ok());
  std::vector<uint32_t> uids = h.host().uids();
  EXPECT_EQ(std::set<uint32_t>(uids.begin(), uids.end()).size(), 3u);
  ASSERT_TRUE(h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("b", false, done); }).ok());
  ASSERT_TRUE(h.Create("d", false).ok());
  EXPECT_EQ(h.host().uids().back(), uids[1]);  // b's uid is free again
}

TEST(VmManager, WatchFromZeroThenChanges) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("a", false).ok());
  absl::Mutex mutex;
  std::vector<api::WatchEvent> events;
  absl::StatusOr<int> id = h.manager().Watch(api::WatchVmsRequest(), [&](const api::WatchEvent& e) {
    absl::MutexLock lock(&mutex);
    events.push_back(e);
  });
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(h.Create("b", true).ok());
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    absl::MutexLock lock(&mutex);
    return !events.empty() && events.back().vm().vm_id() == "b" &&
           events.back().vm().state() == api::VM_STATE_RUNNING;
  }));
  h.manager().Unwatch(*id);  // before taking `mutex`: the sink takes it under the registry's
  absl::MutexLock lock(&mutex);
  EXPECT_EQ(events[0].type(), api::WatchEvent::ADDED);
  EXPECT_EQ(events[1].type(), api::WatchEvent::BOOKMARK);
  uint64_t last = 0;
  for (const api::WatchEvent& e : events) {
    if (e.type() == api::WatchEvent::BOOKMARK || e.vm().vm_id() != "b") continue;
    EXPECT_GT(e.resource_version(), last);
    last = e.resource_version();
  }
}

TEST(VmManager, RestartKeepsVersionsAndAsksWatchersToRelist) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("a", true).ok());
  uint64_t before = h.manager().GetVm("a")->resource_version();
  h.Restart();
  ASSERT_TRUE(h.WaitForState("a", api::VM_STATE_RUNNING));
  absl::StatusOr<api::ListVmsResponse> list = h.manager().ListVms(api::ListVmsRequest());
  ASSERT_TRUE(list.ok());
  EXPECT_GT(list->resource_version(), before);  // never back
  api::WatchVmsRequest old;
  old.set_resource_version(before);
  absl::StatusOr<int> watch = h.manager().Watch(old, [](const api::WatchEvent&) {});
  EXPECT_EQ(watch.status().code(), absl::StatusCode::kOutOfRange) << watch.status();
  api::WatchVmsRequest current;
  current.set_resource_version(list->resource_version());
  absl::StatusOr<int> resumed = h.manager().Watch(current, [](const api::WatchEvent&) {});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  h.manager().Unwatch(*resumed);
}

TEST(VmManager, ConfigureOnlyBeforeBoot) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", false).ok());
  auto set_memory = [](uint32_t mib) {
    return [mib](api::VmConfig* config) {
      config->mutable_machine_config()->set_mem_size_mib(mib);
      return absl::OkStatus();
    };
  };
  absl::StatusOr<api::VmConfig> config = h.Await<api::VmConfig>(
      [&](Done<api::VmConfig> done) { h.manager().Configure("vm1", set_memory(512), done); });
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(h.manager().GetConfig("vm1")->machine_config().mem_size_mib(), 512u);
  config = h.Await<api::VmConfig>(
      [&](Done<api::VmConfig> done) { h.manager().Configure("vm1", set_memory(0), done); });
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  config = h.Await<api::VmConfig>(
      [&](Done<api::VmConfig> done) { h.manager().Configure("vm1", set_memory(1 << 20), done); });
  EXPECT_EQ(config.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("vm1", done); }).ok());
  config = h.Await<api::VmConfig>(
      [&](Done<api::VmConfig> done) { h.manager().Configure("vm1", set_memory(256), done); });
  EXPECT_EQ(config.status().message(),
            "pre-boot configuration: vm \"vm1\" is RUNNING (allowed in CONFIGURING)");
}

}  // namespace
}  // namespace hearth::agent
