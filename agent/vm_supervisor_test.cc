// VmManager in-process: supervising VMMs. Exits and their reasons,
// re-attaching after an agent restart (live, unreachable, dead VMM),
// malformed control messages.
#include "agent/testing/manager_harness.h"
#include "agent/vm_manager.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;
using testing::ManagerHarness;

control::GuestExit Guest(control::GuestExit::Kind kind, const std::string& reason) {
  control::GuestExit guest;
  guest.set_kind(kind);
  guest.set_reason(reason);
  return guest;
}

TEST(VmSupervisor, VmmCrashFailsTheVmWithTheReason) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.host().Vmm("vm1")->WriteConsole("last words\n");
  ASSERT_TRUE(ManagerHarness::WaitFor([&] {
    return (*h.manager().Console("vm1"))->Tail(100).find("last words") != std::string::npos;
  }));
  h.host().Vmm("vm1")->Kill();
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_FAILED));
  api::Vm vm = *h.manager().GetVm("vm1");
  EXPECT_EQ(vm.status().reason(), "the VMM was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(vm.status().exit().signal(), 9);
  EXPECT_NE(vm.status().exit().console_tail().find("last words"), std::string::npos);
  EXPECT_EQ(vm.status().vmm_pid(), 0);
  EXPECT_TRUE(vm.status().has_stopped_at());
  EXPECT_GE(h.host().released().count("vm1"), 1u);
}

TEST(VmSupervisor, SeccompKillIsNamed) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.host().Vmm("vm1")->AppendLog("hearth-vmm: bad syscall 41");
  h.host().Vmm("vm1")->Exit(std::nullopt, ExitStatus{std::nullopt, 31});
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_FAILED));
  EXPECT_EQ(h.manager().GetVm("vm1")->status().reason(),
            "bad syscall 41: the VMM's seccomp filter killed it");
}

TEST(VmSupervisor, GuestResetStopsTheVm) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.host().Vmm("vm1")->Exit(Guest(control::GuestExit::KIND_RESET, "the guest reset"),
                            ExitStatus{0, std::nullopt});
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_STOPPED));
  api::Vm vm = *h.manager().GetVm("vm1");
  EXPECT_EQ(vm.status().reason(), "the guest reset");
  EXPECT_TRUE(vm.status().exit().guest_reset());
  // A stopped VM may be deleted without force.
  EXPECT_TRUE(*h.Await<bool>([&](Done<bool> done) { h.manager().DeleteVm("vm1", false, done); }));
}

TEST(VmSupervisor, MalformedControlMessagesAreDropped) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("vm1", true).ok());
  h.host().Vmm("vm1")->SendMalformed();
  absl::StatusOr<api::Vm> paused =
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().SetVmState("vm1", "Paused", done); });
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), api::VM_STATE_PAUSED);
}

TEST(VmSupervisor, ReattachToALiveVmm) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("run", true).ok());
  ASSERT_TRUE(h.Create("idle", false).ok());
  int pid = h.host().Vmm("run")->pid();
  h.Restart();
  ASSERT_TRUE(h.WaitForState("run", api::VM_STATE_RUNNING));
  EXPECT_EQ(h.host().Vmm("run")->pid(), pid);  // the same VMM, not a new one
  EXPECT_EQ(h.host().All().size(), 2u);
  // The console comes back, and calls reach the VMM.
  EXPECT_TRUE(ManagerHarness::WaitFor(
      [&] { return h.host().Vmm("run")->count(control::Request::kAttachConsole) == 1; }));
  h.host().Vmm("run")->WriteConsole("after restart\n");
  EXPECT_TRUE(ManagerHarness::WaitFor([&] {
    return (*h.manager().Console("run"))->Tail(100).find("after restart") != std::string::npos;
  }));
  EXPECT_TRUE(h.Await<api::Vm>([&](Done<api::Vm> done) {
                 h.manager().SetVmState("run", "Paused", done);
               }).ok());
  // The idle one can still be started.
  ASSERT_TRUE(
      h.Await<api::Vm>([&](Done<api::Vm> done) { h.manager().InstanceStart("idle", done); }).ok());
  // After a restart the agent is no longer the parent: an exit's status is
  // unknown, and the reason says so.
  h.host().Vmm("run")->Kill();
  ASSERT_TRUE(h.WaitForState("run", api::VM_STATE_FAILED));
  EXPECT_EQ(h.manager().GetVm("run")->status().reason(),
            "the VMM exited while the agent was away (its exit status is unknown)");
}

TEST(VmSupervisor, ReattachToADeadOrUnreachableVmm) {
  ManagerHarness h;
  ASSERT_TRUE(h.Create("dead", true).ok());
  ASSERT_TRUE(h.Create("walled", true).ok());
  h.host().Vmm("walled")->SetUnreachable();
  // The agent dies; one VMM dies while it is away.
  h.StopAgent();
  h.host().Vmm("dead")->Kill();
  h.StartAgent();
  ASSERT_TRUE(h.WaitForState("dead", api::VM_STATE_FAILED));
  ASSERT_TRUE(h.WaitForState("walled", api::VM_STATE_FAILED));
  EXPECT_EQ(h.manager().GetVm("dead")->status().reason(),
            "the VMM exited while the agent was down");
  EXPECT_NE(h.manager().GetVm("walled")->status().reason().find("the VMM was killed"),
            std::string::npos);
  // An unreachable VMM does not run on unsupervised.
  EXPECT_TRUE(h.host().Vmm("walled")->exited());
  EXPECT_EQ(h.host().Live(), 0);
}

TEST(VmSupervisor, AStartInterruptedByARestartConverges) {
  ManagerHarness h;
  // The VMM never says Ready: InstanceStart leaves the VM STARTING.
  h.host().HoldReady(true);
  ASSERT_TRUE(h.Create("vm1", false).ok());
  h.manager().InstanceStart("vm1", [](absl::StatusOr<api::Vm>) {});
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_STARTING));
  h.host().HoldReady(false);
  h.StopAgent();
  h.host().Vmm("vm1")->ReleaseReady();  // to the agent that is gone
  h.StartAgent();  // the new agent hears WAITING from the VMM: nothing was started
  ASSERT_TRUE(h.WaitForState("vm1", api::VM_STATE_CONFIGURING));
  // ... so the same CreateVm with start, retried, starts it.
  absl::StatusOr<api::Vm> vm = h.Create("vm1", true);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->state(), api::VM_STATE_RUNNING);
}

}  // namespace
}  // namespace hearth::agent
