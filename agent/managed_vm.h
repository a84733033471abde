// ManagedVm: one VM as the manager's supervisor thread holds it: its
// durable record (public state + what the agent needs to find its VMM
// again), the live VMM (control connection with its pending calls,
// console socket), and the state machine's pure transitions: state
// changes with their timestamps, what the VMM's Ready says, and why a VMM
// ended (ExitReason). Nothing here does I/O; managed_vm_test.cc tests it
// directly.
#ifndef HEARTH_AGENT_MANAGED_VM_H_
#define HEARTH_AGENT_MANAGED_VM_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/console_buffer.h"
#include "agent/launcher.h"
#include "agent/vmm_connection.h"
#include "hearth/agent/v1/state.pb.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {

template <typename T>
using Done = std::function<void(absl::StatusOr<T>)>;

struct ManagedVm {
  // The VMM while it runs.
  struct Process {
    VmmProcess handle;
    std::unique_ptr<VmmConnection> connection;
    UniqueFd console;  // the agent's end of the console socket
    bool ready = false;
    std::vector<std::function<void(absl::Status)>> on_ready;
    std::optional<hearth::vmm::v1::GuestExit> guest_exit;
  };

  hearth::agent::v1::VmRecord record;
  std::optional<Process> process;
  std::shared_ptr<ConsoleBuffer> console;
  UniqueFd serial_out;
  // The VM's logger.log_path, for reading (see BootResources::log_reader).
  UniqueFd log_reader;
  absl::Time created = absl::Now();
  absl::Time start_requested = absl::InfinitePast();
  bool first_output_seen = false;
  std::vector<Done<bool>> pending_deletes;
  // Identical CreateVm(start) calls that arrived while this VM was
  // starting: they get the start's answer.
  std::vector<Done<hearth::v1::Vm>> start_waiters;
  // The record changed but could not be saved: saved again on the next tick.
  bool dirty = false;

  hearth::v1::Vm* vm() { return record.mutable_vm(); }
  const std::string& id() const { return record.vm().vm_id(); }
  hearth::v1::VmState state() const { return record.vm().state(); }

  // Moves to `state` with `reason` (empty clears it), stamping started_at
  // on the first RUNNING and stopped_at when the VM stops being live.
  void SetState(hearth::v1::VmState state, std::string reason, absl::Time now);
  // The VMM's Ready: the VmmReady condition, the create-to-ready time, and
  // the run state a re-attached VMM reports (`reattached`: the agent
  // restarted, so a STARTING record may be stale either way).
  void ApplyReady(const hearth::vmm::v1::Ready& ready, bool reattached, absl::Time now);
  // The first console output after a start: its boot timing. Returns
  // whether this was it (the change is worth publishing).
  bool NoteOutput(absl::Time now);
};

// Why a VMM ended, from what is known: how the process ended (nullopt
// after an agent restart), what the guest reported, the end of the VMM's
// own log (`vmm_log`: only the agent and the VMM write it, so "bad syscall
// N" is read there only), the end of the VM's logger file (`vm_log`: the
// tenant's, it may give an exit's last line but never a syscall number)
// and the console's tail.
// Fills `exit` and returns the state the VM moves to and the reason.
struct ExitDecision {
  hearth::v1::VmState state;
  std::string reason;
};
ExitDecision ExitReason(const std::optional<ExitStatus>& status,
                        const std::optional<hearth::vmm::v1::GuestExit>& guest,
                        const std::string& vmm_log, const std::string& vm_log,
                        const std::string& console_tail, hearth::v1::VmExit* exit);

// `in` with invalid UTF-8 replaced by U+FFFD (for proto string fields).
std::string SanitizeUtf8(const std::string& in);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_MANAGED_VM_H_
