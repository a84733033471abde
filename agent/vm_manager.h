// VmManager: every VM the agent owns, and the one thread that acts on them.
//
// The supervisor thread runs an EventLoop serving each VM's control channel,
// console socket and process fd (pidfd), and performs every change to a
// VM; gRPC handlers hand work to it (Post) and get their answer through a
// callback run on that thread. It is also the only thread that forks
// jailers, so that nothing depends on the lifetime of a gRPC worker thread.
//
// Reads that must be fast (GetVm, ListVms) and watches are served from a
// snapshot of every VM's public state, updated under a mutex whenever a VM
// changes, with an agent-wide resource version and a bounded history of
// changes for WatchVms to resume from.
#ifndef HEARTH_AGENT_VM_MANAGER_H_
#define HEARTH_AGENT_VM_MANAGER_H_

#include <sys/types.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "agent/console_buffer.h"
#include "agent/image_roots.h"
#include "agent/labels.h"
#include "agent/state_store.h"
#include "agent/vmm_connection.h"
#include "common/cgroup_mounts.h"
#include "common/event_loop.h"
#include "common/timer_fd.h"
#include "hearth/agent/v1/state.pb.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {

inline constexpr char kAgentVersion[] = "0.1.0";

struct ManagerOptions {
  // Empty: run the VMM without a jail (development and tests only: no
  // cgroups, namespaces, chroot or separate uid).
  std::string jailer_path;
  std::string vmm_path;
  std::string chroot_base_dir = "/srv/jailer";
  std::string state_dir = "/var/lib/hearth";
  std::string run_dir = "/run/hearth";
  std::vector<std::string> image_roots;
  // VMMs run as uid/gid vmm_uid_base + n, one per VM.
  uint32_t vmm_uid_base = 400000;
  // 0: detect (v1 if a v1 memory hierarchy is mounted, else v2).
  int cgroup_version = 0;
  std::string parent_cgroup = "hearth";
  // Memory the VMM may use beyond guest RAM (its cgroup limit).
  uint64_t vmm_overhead_mib = 64;
  uint32_t max_vcpus = 0;       // 0: 4 per host CPU
  uint64_t max_memory_mib = 0;  // 0: host RAM
  uint32_t max_vms = 256;
  size_t console_buffer_bytes = 256 * 1024;
  size_t watch_history = 4096;
};

// The cgroup files and values a VM's spec implies: memory = guest RAM +
// `overhead_mib`, CPU quota = one CPU per vCPU, pids for the VMM's threads.
std::vector<std::pair<std::string, std::string>> CgroupSettings(const hearth::v1::VmConfig& spec,
                                                                int cgroup_version,
                                                                uint64_t overhead_mib);

class VmManager {
 public:
  static absl::StatusOr<std::unique_ptr<VmManager>> Create(ManagerOptions options);
  ~VmManager();

  // Loads the state directory, re-attaches to VMMs that are still running,
  // marks the others FAILED, and starts the supervisor thread.
  absl::Status Start();
  // Stops the supervisor thread. VMMs keep running.
  void Stop();

  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  // --- Hearth's own RPCs ---
  void CreateVm(const hearth::v1::CreateVmRequest& request, Done<hearth::v1::Vm> done);
  void DeleteVm(const std::string& vm_id, bool force, Done<bool> done);
  absl::StatusOr<hearth::v1::Vm> GetVm(const std::string& vm_id) const;
  absl::StatusOr<hearth::v1::ListVmsResponse> ListVms(
      const hearth::v1::ListVmsRequest& request) const;
  hearth::v1::HostInfo GetHostInfo() const;
  // What the live VMs use (vCPUs, memory, count): GetHostInfo's allocated.
  hearth::v1::HostAllocation Allocated() const;

  // Watching: `sink` receives every matching event after
  // request.resource_version (initial ADDED events and a BOOKMARK when that
  // is 0), in order, under a lock: it must only queue. Returns an id for
  // Unwatch.
  absl::StatusOr<int> Watch(const hearth::v1::WatchVmsRequest& request,
                            std::function<void(const hearth::v1::WatchEvent&)> sink);
  void Unwatch(int id);

  // The console of a VM (live or ended), and input for it.
  absl::StatusOr<std::shared_ptr<ConsoleBuffer>> Console(const std::string& vm_id) const;
  void ConsoleInput(const std::string& vm_id, std::string data);

  // --- Firecracker's resources ---
  // Pre-boot change to the stored configuration: `mutate` edits a copy,
  // which is validated and stored; the result is the whole new config.
  void Configure(const std::string& vm_id,
                 std::function<absl::Status(hearth::v1::VmConfig*)> mutate,
                 Done<hearth::v1::VmConfig> done);
  absl::StatusOr<hearth::v1::VmConfig> GetConfig(const std::string& vm_id) const;
  void InstanceStart(const std::string& vm_id, Done<hearth::v1::Vm> done);
  void SendCtrlAltDel(const std::string& vm_id, Done<bool> done);
  void FlushMetrics(const std::string& vm_id, Done<std::string> done);
  // "Paused" or "Resumed".
  void SetVmState(const std::string& vm_id, const std::string& state, Done<hearth::v1::Vm> done);
  void PatchDrive(const hearth::v1::PartialDrive& patch, const std::string& vm_id,
                  Done<hearth::v1::Drive> done);
  void PatchNetworkInterface(const hearth::v1::PartialNetworkInterface& patch,
                             const std::string& vm_id, Done<hearth::v1::NetworkInterface> done);
  void PatchBalloon(const std::string& vm_id, uint32_t amount_mib, Done<hearth::v1::Balloon> done);
  void PatchBalloonStatistics(const std::string& vm_id, uint32_t interval_s,
                              Done<hearth::v1::Balloon> done);
  void GetBalloonStatistics(const std::string& vm_id, Done<hearth::v1::BalloonStatistics> done);

  // Snapshots. CreateSnapshot: of a PAUSED VM, into files beneath the
  // image roots. LoadSnapshot: into a VM that is CONFIGURING with nothing
  // but logger and metrics configured. CloneVm: one snapshot into several
  // new VMs, all or nothing.
  void CreateSnapshot(const std::string& vm_id, const hearth::v1::SnapshotCreateParams& params,
                      Done<hearth::v1::CreateSnapshotResponse> done);
  void LoadSnapshot(const std::string& vm_id, const hearth::v1::SnapshotLoadParams& params,
                    Done<hearth::v1::Vm> done);
  void CloneVm(const hearth::v1::CloneVmRequest& request, Done<hearth::v1::CloneVmResponse> done);

  // Every VM's last device metrics (from FlushMetrics), as JSON objects.
  std::map<std::string, std::string> LastMetrics() const;
  // FlushMetrics on every RUNNING or PAUSED VM (results land in
  // LastMetrics); `done` runs once all have answered.
  void FlushAllMetrics(std::function<void()> done);
  // Sends a BOOKMARK at the current resource version to every watcher.
  void SendBookmarks();

  const ImageRoots& roots() const { return roots_; }
  const ManagerOptions& options() const { return options_; }

 private:
  struct VmmProcess;
  struct VmEntry;

  explicit VmManager(ManagerOptions options, StateStore store, ImageRoots roots);

  void Post(std::function<void()> task) { loop_->Post(std::move(task)); }
  VmEntry* Find(const std::string& vm_id);
  absl::StatusOr<VmEntry*> FindOr(const std::string& vm_id);
  absl::Status RequireState(const VmEntry& entry, absl::Span<const hearth::v1::VmState> states,
                            absl::string_view what) const;
  // Whether `count` more VMs like `config` fit the host's capacity (not
  // counting `except_vm`, which they replace).
  absl::Status Admit(const hearth::v1::VmConfig& config, const std::string& except_vm,
                     uint32_t count = 1) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(snapshot_mutex_);
  // What the live VMs other than `except_vm` use.
  hearth::v1::HostAllocation AllocatedLocked(const std::string& except_vm) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(snapshot_mutex_);

  // Records a change: next resource version, the record on disk, the
  // snapshot, the watch history and the watchers.
  void Publish(VmEntry* entry, hearth::v1::WatchEvent::Type type);
  // A new CONFIGURING VM with its VMM spawned (INTERNAL, and the VM FAILED,
  // if the VMM could not be started).
  absl::Status AddVm(const std::string& vm_id, const Labels& labels,
                     const hearth::v1::VmConfig& spec, const hearth::v1::VmConfig& created_config,
                     const std::string& clone_key);
  void SetState(VmEntry* entry, hearth::v1::VmState state, std::string reason);

  absl::Status SpawnVmm(VmEntry* entry);
  void Reattach(VmEntry* entry);
  void WatchProcess(VmEntry* entry, int pidfd);
  void OnControlReadable(const std::string& vm_id);
  void OnEvent(VmEntry* entry, const hearth::vmm::v1::Event& event);
  void OnConsoleReadable(const std::string& vm_id);
  void OnProcessExit(const std::string& vm_id);
  void CleanUpProcess(VmEntry* entry);
  void FinishDelete(VmEntry* entry);
  void WhenReady(VmEntry* entry, std::function<void(absl::Status)> action);
  // Sends `request` to the VMM of a VM in one of `states` and hands the
  // response to `then`; `fail` gets every error (wrong state, no VMM, the
  // VMM's answer).
  void Forward(const std::string& vm_id, std::vector<hearth::v1::VmState> states, std::string what,
               hearth::vmm::v1::Request request, std::function<void(absl::Status)> fail,
               std::function<void(VmEntry*, const hearth::vmm::v1::Response&)> then);
  // How long a VMM may take to answer a request.
  static constexpr absl::Duration kCallTimeout = absl::Seconds(30);
  // Sends a request; `done` gets the response (or why there is none).
  void Call(VmEntry* entry, hearth::vmm::v1::Request request, std::vector<UniqueFd> fds,
            std::function<void(absl::StatusOr<hearth::vmm::v1::Response>)> done,
            absl::Duration timeout = kCallTimeout);
  // Fails the requests whose VMM has not answered by their deadline.
  void ExpireCalls();
  // The files, taps and sockets of the VM's spec as fds for the VMM, and a
  // console socket; `boot` adds the kernel and initrd (not for a restore).
  absl::Status OpenBootResources(VmEntry* entry, hearth::vmm::v1::FdMap* map,
                                 std::vector<UniqueFd>* fds, UniqueFd* console, bool boot);
  // Restores a snapshot into the CONFIGURING VM `vm_id` (LoadSnapshot and
  // each clone of CloneVm).
  void RestoreInto(const std::string& vm_id, const hearth::v1::SnapshotLoadParams& params,
                   std::vector<hearth::v1::DriveOverride> drive_overrides,
                   Done<hearth::v1::Vm> done);
  // The cgroup limits of the VM's current spec (memory, CPU, pids).
  absl::Status WriteCgroupLimits(VmEntry* entry);
  void ChangeRunState(const std::string& vm_id, const std::string& state,
                      Done<hearth::v1::Vm> done);
  void ConnectVsock(VmEntry* entry, uint64_t request_id, uint32_t port);

  const ManagerOptions options_;
  const StateStore store_;
  const ImageRoots roots_;
  int cgroup_version_ = 1;
  std::vector<CgroupMount> cgroup_mounts_;
  std::unique_ptr<EventLoop> loop_;
  std::optional<TimerFd> call_timer_;
  std::thread thread_;

  // Supervisor thread only.
  std::map<std::string, std::unique_ptr<VmEntry>> entries_;
  uint64_t reserved_version_ = 0;

  // Shared with gRPC threads.
  mutable absl::Mutex snapshot_mutex_;
  std::map<std::string, hearth::v1::Vm> snapshot_ ABSL_GUARDED_BY(snapshot_mutex_);
  std::map<std::string, std::shared_ptr<ConsoleBuffer>> consoles_ ABSL_GUARDED_BY(snapshot_mutex_);
  std::map<std::string, std::string> metrics_ ABSL_GUARDED_BY(snapshot_mutex_);
  uint64_t resource_version_ ABSL_GUARDED_BY(snapshot_mutex_) = 0;
  std::deque<hearth::v1::WatchEvent> history_ ABSL_GUARDED_BY(snapshot_mutex_);
  struct Watcher {
    LabelSelector selector;
    std::string vm_id;
    std::function<void(const hearth::v1::WatchEvent&)> sink;
  };
  std::map<int, Watcher> watchers_ ABSL_GUARDED_BY(snapshot_mutex_);
  int next_watcher_ ABSL_GUARDED_BY(snapshot_mutex_) = 1;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_VM_MANAGER_H_
