// ProcessLauncher: the real VmmLauncher. Spawns `hearth-jailer` (or, with
// no jailer configured, `hearth-vmm` directly) with the control socket on
// fd 3 and the re-attach listener on fd 4, supervises it with a pidfd, and
// manages the VM's cgroups, jail directory and run directory.
//
// Runs on the manager's supervisor thread only: PR_SET_PDEATHSIG-style
// lifetimes and posix_spawn must not depend on a gRPC worker thread.
#ifndef HEARTH_AGENT_PROCESS_LAUNCHER_H_
#define HEARTH_AGENT_PROCESS_LAUNCHER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/launcher.h"
#include "common/cgroup_mounts.h"

namespace hearth::agent {

struct LauncherOptions {
  // Empty: run the VMM without a jail (development and tests only: no
  // cgroups, namespaces, chroot or separate uid).
  std::string jailer_path;
  std::string vmm_path;
  std::string chroot_base_dir = "/srv/jailer";
  std::string run_dir = "/run/hearth";
  // 0: detect (v1 if a v1 memory hierarchy is mounted, else v2).
  int cgroup_version = 0;
  std::string parent_cgroup = "hearth";
  // Memory the VMM may use beyond guest RAM (its cgroup limit).
  uint64_t vmm_overhead_mib = 64;
};

// The cgroup files and values a VM's spec implies: memory = guest RAM +
// `overhead_mib`, CPU quota = one CPU per vCPU, pids for the VMM's threads.
std::vector<std::pair<std::string, std::string>> CgroupSettings(const hearth::v1::VmConfig& spec,
                                                                int cgroup_version,
                                                                uint64_t overhead_mib);

// Field 22 of /proc/<pid>/stat (the start time, to recognise a reused
// pid); 0 if the process is not there.
uint64_t ProcessStartTime(pid_t pid);

class ProcessLauncher final : public VmmLauncher {
 public:
  // Creates <run_dir>/vms and reads the host's cgroup mounts.
  static absl::StatusOr<std::unique_ptr<ProcessLauncher>> Create(LauncherOptions options);

  int cgroup_version() const override { return cgroup_version_; }
  void Plan(hearth::agent::v1::VmRecord* record, uint32_t uid) override;
  absl::StatusOr<VmmProcess> Spawn(hearth::agent::v1::VmRecord* record) override;
  absl::StatusOr<VmmProcess> Reattach(const hearth::agent::v1::VmRecord& record) override;
  absl::Status Kill(const VmmProcess& process) override;
  std::optional<ExitStatus> Reap(const VmmProcess& process) override;
  absl::Status ApplyLimits(const hearth::agent::v1::VmRecord& record,
                           const hearth::v1::VmConfig& spec) override;
  void Release(const hearth::agent::v1::VmRecord& record) override;
  void RemoveRunDir(const hearth::agent::v1::VmRecord& record) override;
  std::string LogTail(const hearth::agent::v1::VmRecord& record) override;

 private:
  explicit ProcessLauncher(LauncherOptions options) : options_(std::move(options)) {}
  // The argv of a jailed or unjailed VMM, and the cgroup directories the
  // jailer will create for it.
  std::vector<std::string> Argv(const hearth::agent::v1::VmRecord& record) const;
  // The cgroup settings of `spec` this host has a controller for, each with
  // the VM's directory in that controller's hierarchy.
  struct HostCgroupSetting {
    std::string file;
    std::string value;
    std::string dir;
  };
  std::vector<HostCgroupSetting> HostCgroupSettings(const hearth::v1::VmConfig& spec,
                                                    const std::string& vm_id) const;

  const LauncherOptions options_;
  int cgroup_version_ = 1;
  std::vector<CgroupMount> cgroup_mounts_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_PROCESS_LAUNCHER_H_
