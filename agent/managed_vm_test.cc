#include "agent/managed_vm.h"

#include <signal.h>

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;

ManagedVm MakeVm(api::VmState state) {
  ManagedVm vm;
  vm.vm()->set_vm_id("vm1");
  vm.vm()->set_state(state);
  return vm;
}

control::Ready Ready(control::VmState state) {
  control::Ready ready;
  ready.set_protocol_version(1);
  ready.set_state(state);
  return ready;
}

TEST(ManagedVm, SetStateStampsStartAndStop) {
  ManagedVm vm = MakeVm(api::VM_STATE_STARTING);
  absl::Time t = absl::FromUnixSeconds(1000);
  vm.SetState(api::VM_STATE_RUNNING, "", t);
  EXPECT_EQ(vm.record.vm().status().started_at().seconds(), 1000);
  vm.SetState(api::VM_STATE_PAUSED, "paused", t + absl::Seconds(1));
  vm.SetState(api::VM_STATE_RUNNING, "", t + absl::Seconds(2));
  EXPECT_EQ(vm.record.vm().status().started_at().seconds(), 1000);  // the first start
  EXPECT_FALSE(vm.record.vm().status().has_stopped_at());
  vm.SetState(api::VM_STATE_STOPPED, "guest reset", t + absl::Seconds(3));
  EXPECT_EQ(vm.record.vm().status().stopped_at().seconds(), 1003);
  EXPECT_EQ(vm.record.vm().status().reason(), "guest reset");
}

TEST(ManagedVm, ReadyMarksTheConditionOnce) {
  ManagedVm vm = MakeVm(api::VM_STATE_CONFIGURING);
  vm.created = absl::FromUnixSeconds(10);
  vm.ApplyReady(Ready(control::VM_STATE_WAITING), false, absl::FromUnixSeconds(11));
  const api::VmStatus& status = vm.record.vm().status();
  ASSERT_EQ(status.conditions_size(), 1);
  EXPECT_EQ(status.conditions(0).type(), "VmmReady");
  EXPECT_EQ(status.conditions(0).status(), api::CONDITION_STATUS_TRUE);
  EXPECT_EQ(status.boot_timing().create_to_vmm_ready_us(), 1000000u);
  EXPECT_EQ(status.reason(), "waiting for InstanceStart");
  vm.ApplyReady(Ready(control::VM_STATE_WAITING), true, absl::FromUnixSeconds(50));
  EXPECT_EQ(vm.record.vm().status().conditions_size(), 1);
  EXPECT_EQ(vm.record.vm().status().conditions(0).last_transition_time().seconds(), 11);
}

TEST(ManagedVm, ReattachedReadyConvergesTheState) {
  // A record left STARTING by an agent that died mid-start follows the VMM.
  ManagedVm running = MakeVm(api::VM_STATE_STARTING);
  running.ApplyReady(Ready(control::VM_STATE_RUNNING), true, absl::Now());
  EXPECT_EQ(running.state(), api::VM_STATE_RUNNING);
  EXPECT_TRUE(running.record.vm().status().has_started_at());

  ManagedVm waiting = MakeVm(api::VM_STATE_STARTING);
  waiting.ApplyReady(Ready(control::VM_STATE_WAITING), true, absl::Now());
  EXPECT_EQ(waiting.state(), api::VM_STATE_CONFIGURING);

  ManagedVm paused = MakeVm(api::VM_STATE_RUNNING);
  paused.ApplyReady(Ready(control::VM_STATE_PAUSED), true, absl::Now());
  EXPECT_EQ(paused.state(), api::VM_STATE_PAUSED);

  // A fresh VMM's Ready during a start changes nothing: Boot is on its way.
  ManagedVm starting = MakeVm(api::VM_STATE_STARTING);
  starting.ApplyReady(Ready(control::VM_STATE_WAITING), false, absl::Now());
  EXPECT_EQ(starting.state(), api::VM_STATE_STARTING);
}

TEST(ManagedVm, FirstOutputOnlyAfterAStart) {
  ManagedVm vm = MakeVm(api::VM_STATE_RUNNING);
  EXPECT_FALSE(vm.NoteOutput(absl::Now()));
  vm.start_requested = absl::FromUnixSeconds(1);
  EXPECT_TRUE(vm.NoteOutput(absl::FromUnixSeconds(2)));
  EXPECT_FALSE(vm.NoteOutput(absl::FromUnixSeconds(3)));
  EXPECT_EQ(vm.record.vm().status().boot_timing().start_to_first_output_us(), 1000000u);
}

control::GuestExit Guest(control::GuestExit::Kind kind, const std::string& reason) {
  control::GuestExit guest;
  guest.set_kind(kind);
  guest.set_reason(reason);
  return guest;
}

TEST(ExitReason, GuestResetWithACleanExitStops) {
  api::VmExit exit;
  ExitDecision d =
      ExitReason(ExitStatus{0, std::nullopt},
                 Guest(control::GuestExit::KIND_RESET, "the guest reset"), "", "", "bye\n", &exit);
  EXPECT_EQ(d.state, api::VM_STATE_STOPPED);
  EXPECT_EQ(d.reason, "the guest reset");
  EXPECT_TRUE(exit.guest_reset());
  EXPECT_EQ(exit.exit_code(), 0);
  EXPECT_EQ(exit.console_tail(), "bye\n");
}

TEST(ExitReason, GuestErrorFails) {
  api::VmExit exit;
  ExitDecision d =
      ExitReason(ExitStatus{1, std::nullopt},
                 Guest(control::GuestExit::KIND_ERROR, "emulation failure"), "", "", "", &exit);
  EXPECT_EQ(d.state, api::VM_STATE_FAILED);
  EXPECT_EQ(d.reason, "emulation failure");
}

TEST(ExitReason, SeccompKill) {
  api::VmExit exit;
  ExitDecision d = ExitReason(ExitStatus{std::nullopt, SIGSYS}, std::nullopt,
                              "hearth-vmm: bad syscall 59\n", "", "", &exit);
  EXPECT_EQ(d.state, api::VM_STATE_FAILED);
  EXPECT_EQ(d.reason, "bad syscall 59: the VMM's seccomp filter killed it");
  EXPECT_EQ(exit.bad_syscall(), 59);
}

TEST(ExitReason, SignalAndExitCode) {
  api::VmExit exit;
  EXPECT_EQ(ExitReason(ExitStatus{std::nullopt, SIGKILL}, std::nullopt, "", "", "", &exit).reason,
            "the VMM was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(
      ExitReason(ExitStatus{3, std::nullopt}, std::nullopt, "a\nlast words\n\n", "", "", &exit)
          .reason,
      "the VMM exited with code 3: last words");
  EXPECT_EQ(ExitReason(std::nullopt, std::nullopt, "", "", "", &exit).reason,
            "the VMM exited while the agent was away (its exit status is unknown)");
  // A reset reported by a VMM that then crashed is not a clean stop.
  EXPECT_EQ(ExitReason(ExitStatus{std::nullopt, SIGSEGV},
                       Guest(control::GuestExit::KIND_RESET, "reset"), "", "", "", &exit)
                .state,
            api::VM_STATE_FAILED);
}

TEST(ExitReason, TheTenantsLogNeverNamesASyscall) {
  // The VM's logger file is the tenant's: text there that looks like a
  // seccomp report must not relabel a SIGKILL.
  api::VmExit exit;
  ExitDecision d = ExitReason(ExitStatus{std::nullopt, SIGKILL}, std::nullopt, "",
                              "hearth-vmm: bad syscall 1\n", "", &exit);
  EXPECT_EQ(d.reason, "the VMM was killed by signal 9 (SIGKILL)");
  EXPECT_FALSE(exit.has_bad_syscall());
  // It may give an exit's last line.
  EXPECT_EQ(
      ExitReason(ExitStatus{1, std::nullopt}, std::nullopt, "vmm line\n", "vm line\n", "", &exit)
          .reason,
      "the VMM exited with code 1: vm line");
}

TEST(SanitizeUtf8, ReplacesInvalidBytes) {
  EXPECT_EQ(SanitizeUtf8("ok \xc3\xa9"), "ok \xc3\xa9");
  EXPECT_EQ(SanitizeUtf8("a\xff"
                         "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(SanitizeUtf8("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd");
}

}  // namespace
}  // namespace hearth::agent
