// VmmLauncher: everything the agent does to the host for a VMM's process:
// spawning it (jailed or not) with its run directory, uid, cgroups and
// re-attach socket; reconnecting after an agent restart; killing it; its
// cgroup limits; reading how it ended; removing what it leaves behind.
//
// The manager decides, the launcher acts. ProcessLauncher
// (process_launcher.h) is the real one; testing/fake_launcher.h hands back
// an in-process fake VMM that speaks control.proto, so that the manager's
// behaviour is tested without KVM or root.
#ifndef HEARTH_AGENT_LAUNCHER_H_
#define HEARTH_AGENT_LAUNCHER_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "hearth/agent/v1/state.pb.h"
#include "hearth/v1/config.pb.h"

namespace hearth::agent {

// A running VMM as the launcher hands it over.
struct VmmProcess {
  pid_t pid = -1;
  // The process's start time (/proc/<pid>/stat field 22), to recognise it.
  uint64_t start_time = 0;
  // Readable once the VMM is gone (a pidfd).
  UniqueFd exit_fd;
  // The agent's end of the control channel.
  UniqueFd control;
  // Started by this agent: its exit status can be read (Reap).
  bool child = true;
};

// How a VMM process ended.
struct ExitStatus {
  std::optional<int> exit_code;
  std::optional<int> signal;
};

class VmmLauncher {
 public:
  virtual ~VmmLauncher() = default;

  // 1 or 2: the cgroup hierarchy VMs are placed in.
  virtual int cgroup_version() const = 0;

  // Where a VMM for the VM `record` describes will live: fills in the
  // record's uid (`uid` when jailed), run_dir, jail_dir and cgroup_dirs,
  // and touches nothing. The manager saves this intent before Spawn, so
  // that an agent killed at any instant after finds what it made.
  virtual void Plan(hearth::agent::v1::VmRecord* record, uint32_t uid) = 0;

  // Starts a VMM for a planned `record` (its vm and spec). Fills in the
  // record's pid and pid_start_time. On error nothing is left running.
  virtual absl::StatusOr<VmmProcess> Spawn(hearth::agent::v1::VmRecord* record) = 0;

  // Reconnects to the VMM a record names (an agent restart): NOT_FOUND if
  // it is gone; UNAVAILABLE, after killing it, if it runs but cannot be
  // supervised or reached. A record with no pid (the agent died between
  // saving its intent and saving the spawned VMM) is found through its
  // run directory, and the returned pid is the VMM's.
  virtual absl::StatusOr<VmmProcess> Reattach(const hearth::agent::v1::VmRecord& record) = 0;

  // Asks the VMM to end now (SIGKILL); its exit_fd reports the end.
  virtual absl::Status Kill(const VmmProcess& process) = 0;

  // After exit_fd fired: how the VMM ended, if known (a child only).
  virtual std::optional<ExitStatus> Reap(const VmmProcess& process) = 0;

  // Writes the cgroup limits `spec` implies into the VM's cgroups.
  virtual absl::Status ApplyLimits(const hearth::agent::v1::VmRecord& record,
                                   const hearth::v1::VmConfig& spec) = 0;

  // The VMM is gone: removes its cgroups, jail and re-attach socket.
  virtual void Release(const hearth::agent::v1::VmRecord& record) = 0;
  // The VM is deleted: removes its run directory.
  virtual void RemoveRunDir(const hearth::agent::v1::VmRecord& record) = 0;

  // The end of what the VMM wrote to its own log (stderr: the run
  // directory's vmm.log, which only the agent and the VMM can write), for
  // exit reasons.
  virtual std::string LogTail(const hearth::agent::v1::VmRecord& record) = 0;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_LAUNCHER_H_
