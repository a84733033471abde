// The phase table: which VM states each state-dependent operation is
// allowed in, and the exact FAILED_PRECONDITION message when it is not.
// One table instead of checks spread over the manager, so that the whole
// RPC x state matrix is tested in one place (phases_test.cc), as
// Firecracker's rpc_interface tests its pre-boot and runtime tables.
#ifndef HEARTH_AGENT_PHASES_H_
#define HEARTH_AGENT_PHASES_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hearth/v1/vm.pb.h"

namespace hearth::agent {

enum class Op {
  kConfigure,  // every pre-boot Put*/Patch* of the configuration
  kInstanceStart,
  kLoadSnapshot,
  kSendCtrlAltDel,
  kFlushMetrics,
  kPause,
  kResume,
  kPatchDrive,
  kPatchNetworkInterface,
  kPatchBalloon,
  kPatchBalloonStatistics,
  kGetBalloonStatistics,
  kCreateSnapshot,
  kDelete,  // DeleteVm without force
};

// Every operation, for tests and documentation.
const std::vector<Op>& AllOps();
// Every state a VM can be in.
const std::vector<hearth::v1::VmState>& AllStates();

// "CONFIGURING", "RUNNING", ...
const char* StateName(hearth::v1::VmState state);
// Whether a VM in `state` still holds (or may still get) a VMM.
bool Live(hearth::v1::VmState state);
// The name the operation has in error messages ("InstanceStart").
const char* OpName(Op op);
// Whether `op` is allowed in `state`.
bool Allowed(Op op, hearth::v1::VmState state);
// OK, or FAILED_PRECONDITION naming the operation, the VM, its state and
// the states that would allow it.
absl::Status CheckPhase(Op op, absl::string_view vm_id, hearth::v1::VmState state);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_PHASES_H_
