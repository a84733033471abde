#include "agent/phases.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hearth::agent {

namespace api = ::hearth::v1;

namespace {

struct Rule {
  Op op;
  const char* name;
  std::vector<api::VmState> allowed;
};

const std::vector<Rule>& Rules() {
  static const auto* rules = new std::vector<Rule>{
      {Op::kConfigure, "pre-boot configuration", {api::VM_STATE_CONFIGURING}},
      {Op::kInstanceStart, "InstanceStart", {api::VM_STATE_CONFIGURING}},
      {Op::kLoadSnapshot, "LoadSnapshot", {api::VM_STATE_CONFIGURING}},
      {Op::kSendCtrlAltDel, "SendCtrlAltDel", {api::VM_STATE_RUNNING}},
      {Op::kFlushMetrics, "FlushMetrics", {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}},
      {Op::kPause, "PatchVm Paused", {api::VM_STATE_RUNNING}},
      {Op::kResume, "PatchVm Resumed", {api::VM_STATE_PAUSED}},
      {Op::kPatchDrive, "PatchDrive", {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}},
      {Op::kPatchNetworkInterface,
       "PatchNetworkInterface",
       {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}},
      {Op::kPatchBalloon, "PatchBalloon", {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}},
      {Op::kPatchBalloonStatistics,
       "PatchBalloonStatistics",
       {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}},
      {Op::kGetBalloonStatistics,
       "GetBalloonStatistics",
       {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}},
      {Op::kCreateSnapshot, "CreateSnapshot", {api::VM_STATE_PAUSED}},
      {Op::kDelete,
       "DeleteVm",
       {api::VM_STATE_CONFIGURING, api::VM_STATE_STOPPED, api::VM_STATE_FAILED}},
  };
  return *rules;
}

const Rule& RuleOf(Op op) {
  for (const Rule& rule : Rules()) {
    if (rule.op == op) return rule;
  }
  return Rules().front();  // unreachable: every Op has a rule (phases_test)
}

}  // namespace

const std::vector<Op>& AllOps() {
  static const auto* ops = [] {
    auto* list = new std::vector<Op>;
    for (const Rule& rule : Rules()) list->push_back(rule.op);
    return list;
  }();
  return *ops;
}

const std::vector<api::VmState>& AllStates() {
  static const auto* states = new std::vector<api::VmState>{
      api::VM_STATE_CONFIGURING, api::VM_STATE_STARTING, api::VM_STATE_RUNNING,
      api::VM_STATE_PAUSED,      api::VM_STATE_STOPPED,  api::VM_STATE_FAILED};
  return *states;
}

const char* StateName(api::VmState state) {
  switch (state) {
    case api::VM_STATE_CONFIGURING:
      return "CONFIGURING";
    case api::VM_STATE_STARTING:
      return "STARTING";
    case api::VM_STATE_RUNNING:
      return "RUNNING";
    case api::VM_STATE_PAUSED:
      return "PAUSED";
    case api::VM_STATE_STOPPED:
      return "STOPPED";
    case api::VM_STATE_FAILED:
      return "FAILED";
    default:
      return "UNSPECIFIED";
  }
}

bool Live(api::VmState state) {
  return state != api::VM_STATE_STOPPED && state != api::VM_STATE_FAILED;
}

const char* OpName(Op op) { return RuleOf(op).name; }

bool Allowed(Op op, api::VmState state) {
  for (api::VmState s : RuleOf(op).allowed) {
    if (s == state) return true;
  }
  return false;
}

absl::Status CheckPhase(Op op, absl::string_view vm_id, api::VmState state) {
  if (Allowed(op, state)) return absl::OkStatus();
  const Rule& rule = RuleOf(op);
  if (op == Op::kDelete) {
    return absl::FailedPreconditionError(
        absl::StrCat("DeleteVm: vm \"", vm_id, "\" is ", StateName(state),
                     "; stop the guest first (SendCtrlAltDel) or delete with force"));
  }
  std::vector<std::string> allowed;
  for (api::VmState s : rule.allowed) allowed.push_back(StateName(s));
  return absl::FailedPreconditionError(absl::StrCat(rule.name, ": vm \"", vm_id, "\" is ",
                                                    StateName(state), " (allowed in ",
                                                    absl::StrJoin(allowed, ", "), ")"));
}

}  // namespace hearth::agent
