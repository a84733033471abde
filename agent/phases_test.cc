#include "agent/phases.h"

#include <map>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;

using S = api::VmState;
constexpr S kConfiguring = api::VM_STATE_CONFIGURING;
constexpr S kStarting = api::VM_STATE_STARTING;
constexpr S kRunning = api::VM_STATE_RUNNING;
constexpr S kPaused = api::VM_STATE_PAUSED;
constexpr S kStopped = api::VM_STATE_STOPPED;
constexpr S kFailed = api::VM_STATE_FAILED;

// The whole table, written out once more by hand: a change to phases.cc
// that is not also made here fails.
const std::map<Op, std::set<S>>& Expected() {
  static const auto* expected = new std::map<Op, std::set<S>>{
      {Op::kConfigure, {kConfiguring}},
      {Op::kInstanceStart, {kConfiguring}},
      {Op::kLoadSnapshot, {kConfiguring}},
      {Op::kSendCtrlAltDel, {kRunning}},
      {Op::kFlushMetrics, {kRunning, kPaused}},
      {Op::kPause, {kRunning}},
      {Op::kResume, {kPaused}},
      {Op::kPatchDrive, {kRunning, kPaused}},
      {Op::kPatchNetworkInterface, {kRunning, kPaused}},
      {Op::kPatchBalloon, {kRunning, kPaused}},
      {Op::kPatchBalloonStatistics, {kRunning, kPaused}},
      {Op::kGetBalloonStatistics, {kRunning, kPaused}},
      {Op::kCreateSnapshot, {kPaused}},
      {Op::kDelete, {kConfiguring, kStopped, kFailed}},
  };
  return *expected;
}

TEST(Phases, EveryOpHasARule) {
  EXPECT_EQ(AllOps().size(), Expected().size());
  std::set<std::string> names;
  for (Op op : AllOps()) {
    EXPECT_TRUE(Expected().count(op)) << OpName(op);
    EXPECT_TRUE(names.insert(OpName(op)).second) << "two ops named " << OpName(op);
  }
}

TEST(Phases, WholeTable) {
  int checked = 0;
  for (Op op : AllOps()) {
    for (S state : AllStates()) {
      const bool expected = Expected().at(op).count(state) > 0;
      absl::Status status = CheckPhase(op, "vm1", state);
      EXPECT_EQ(status.ok(), expected) << OpName(op) << " in " << StateName(state);
      EXPECT_EQ(Allowed(op, state), expected);
      if (!expected) {
        EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
        // The message names the operation, the VM and its state.
        EXPECT_NE(status.message().find(OpName(op)), absl::string_view::npos) << status;
        EXPECT_NE(status.message().find("vm \"vm1\""), absl::string_view::npos) << status;
        EXPECT_NE(status.message().find(StateName(state)), absl::string_view::npos) << status;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 14 * 6);
}

TEST(Phases, ExactMessages) {
  EXPECT_EQ(CheckPhase(Op::kInstanceStart, "a", kRunning).message(),
            "InstanceStart: vm \"a\" is RUNNING (allowed in CONFIGURING)");
  EXPECT_EQ(CheckPhase(Op::kFlushMetrics, "a", kConfiguring).message(),
            "FlushMetrics: vm \"a\" is CONFIGURING (allowed in RUNNING, PAUSED)");
  EXPECT_EQ(CheckPhase(Op::kConfigure, "a", kStarting).message(),
            "pre-boot configuration: vm \"a\" is STARTING (allowed in CONFIGURING)");
  EXPECT_EQ(CheckPhase(Op::kDelete, "a", kPaused).message(),
            "DeleteVm: vm \"a\" is PAUSED; stop the guest first (SendCtrlAltDel) or delete "
            "with force");
}

TEST(Phases, Live) {
  for (S state : AllStates()) {
    EXPECT_EQ(Live(state), state != kStopped && state != kFailed) << StateName(state);
  }
  EXPECT_STREQ(StateName(api::VM_STATE_UNSPECIFIED), "UNSPECIFIED");
}

}  // namespace
}  // namespace hearth::agent
