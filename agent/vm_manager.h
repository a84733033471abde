// VmManager: every VM the agent owns, and the one thread that acts on them.
//
// The supervisor thread runs an EventLoop serving each VM's control
// channel, console socket and exit fd (pidfd), and performs every change to
// a VM; gRPC handlers hand work to it (Post) and get their answer through a
// callback run on that thread. It is also the only thread that starts
// VMMs (through the VmmLauncher), so nothing depends on the lifetime of a
// gRPC worker thread.
//
// Who does what:
//   registry.h         the public view: reads, watches, versions, admission
//   managed_vm.h       one VM: record, live VMM, pure state transitions
//   phases.h           which operation is allowed in which state
//   restore_plan.h     LoadSnapshot/CloneVm decisions
//   launcher.h         the host side of a VMM's process (fake in tests)
//   boot_resources.h   the files, taps and sockets a VMM gets as fds
// and the manager's own methods, by job:
//   vm_manager.cc      start-up, persistence, create/delete, configuration
//   vm_supervisor.cc   spawn, re-attach, calls, control events, console, exit
//   vm_runtime.cc      the one start path, InstanceStart, post-boot calls
//   vm_snapshots.cc    CreateSnapshot, LoadSnapshot, CloneVm
#ifndef HEARTH_AGENT_VM_MANAGER_H_
#define HEARTH_AGENT_VM_MANAGER_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/image_roots.h"
#include "agent/launcher.h"
#include "agent/managed_vm.h"
#include "agent/phases.h"
#include "agent/registry.h"
#include "agent/state_store.h"
#include "agent/vm_api.h"
#include "common/event_loop.h"
#include "common/timer_fd.h"

namespace hearth::agent {

struct ManagerOptions {
  std::string state_dir = "/var/lib/hearth";
  std::vector<std::string> image_roots;
  // VMMs run as uid/gid vmm_uid_base + n, one per VM.
  uint32_t vmm_uid_base = 400000;
  uint32_t max_vcpus = 0;       // 0: 4 per host CPU
  uint64_t max_memory_mib = 0;  // 0: host RAM
  uint32_t max_vms = 256;
  size_t console_buffer_bytes = 256 * 1024;
  HistoryLimits watch_history;
  // How long a VMM may take to answer a request (snapshots: 10 minutes),
  // and how often deadlines are checked.
  absl::Duration call_timeout = absl::Seconds(30);
  absl::Duration call_check_interval = absl::Seconds(1);
  // Tests: every state write goes through this (a full or failing disk).
  StateStore::WriteHook state_write_hook;
};

class VmManager final : public VmApi {
 public:
  static absl::StatusOr<std::unique_ptr<VmManager>> Create(ManagerOptions options,
                                                           std::unique_ptr<VmmLauncher> launcher);
  ~VmManager() override;

  // Loads the state directory, re-attaches to VMMs that are still running,
  // marks the others FAILED, and starts the supervisor thread.
  absl::Status Start();
  // Stops the supervisor thread. VMMs keep running.
  void Stop();

  // VmApi.
  const ImageRoots& roots() const override { return roots_; }
  void CreateVm(const hearth::v1::CreateVmRequest& request, Done<hearth::v1::Vm> done) override;
  void DeleteVm(const std::string& vm_id, bool force, Done<bool> done) override;
  absl::StatusOr<hearth::v1::Vm> GetVm(const std::string& vm_id) const override;
  absl::StatusOr<hearth::v1::ListVmsResponse> ListVms(
      const hearth::v1::ListVmsRequest& request) const override;
  hearth::v1::HostInfo GetHostInfo() const override;
  absl::StatusOr<int> Watch(const hearth::v1::WatchVmsRequest& request,
                            std::function<void(const hearth::v1::WatchEvent&)> sink) override;
  void Unwatch(int id) override;
  absl::StatusOr<std::shared_ptr<ConsoleBuffer>> Console(const std::string& vm_id) const override;
  void ConsoleInput(const std::string& vm_id, std::string data) override;
  void CloneVm(const hearth::v1::CloneVmRequest& request,
               Done<hearth::v1::CloneVmResponse> done) override;
  void Configure(const std::string& vm_id,
                 std::function<absl::Status(hearth::v1::VmConfig*)> mutate,
                 Done<hearth::v1::VmConfig> done) override;
  absl::StatusOr<hearth::v1::VmConfig> GetConfig(const std::string& vm_id) const override;
  void InstanceStart(const std::string& vm_id, Done<hearth::v1::Vm> done) override;
  void SendCtrlAltDel(const std::string& vm_id, Done<bool> done) override;
  void FlushMetrics(const std::string& vm_id, Done<std::string> done) override;
  void SetVmState(const std::string& vm_id, const std::string& state,
                  Done<hearth::v1::Vm> done) override;
  void PatchDrive(const hearth::v1::PartialDrive& patch, const std::string& vm_id,
                  Done<hearth::v1::Drive> done) override;
  void PatchNetworkInterface(const hearth::v1::PartialNetworkInterface& patch,
                             const std::string& vm_id,
                             Done<hearth::v1::NetworkInterface> done) override;
  void PatchBalloon(const std::string& vm_id, uint32_t amount_mib,
                    Done<hearth::v1::Balloon> done) override;
  void PatchBalloonStatistics(const std::string& vm_id, uint32_t interval_s,
                              Done<hearth::v1::Balloon> done) override;
  void GetBalloonStatistics(const std::string& vm_id,
                            Done<hearth::v1::BalloonStatistics> done) override;
  void CreateSnapshot(const std::string& vm_id, const hearth::v1::SnapshotCreateParams& params,
                      Done<hearth::v1::CreateSnapshotResponse> done) override;
  void LoadSnapshot(const std::string& vm_id, const hearth::v1::SnapshotLoadParams& params,
                    Done<hearth::v1::Vm> done) override;

  // What the live VMs use (vCPUs, memory, count): GetHostInfo's allocated.
  hearth::v1::HostAllocation Allocated() const { return registry_.Allocated(); }
  // Every VM's last device metrics (from FlushMetrics), as JSON objects.
  std::map<std::string, std::string> LastMetrics() const { return registry_.LastMetrics(); }
  // FlushMetrics on every RUNNING or PAUSED VM (results land in
  // LastMetrics); `done` runs once all have answered.
  void FlushAllMetrics(std::function<void()> done);
  // Sends a BOOKMARK at the current resource version to every watcher.
  void SendBookmarks() { registry_.SendBookmarks(); }

  const ManagerOptions& options() const { return options_; }

 private:
  VmManager(ManagerOptions options, StateStore store, ImageRoots roots,
            std::unique_ptr<VmmLauncher> launcher);

  // --- vm_manager.cc ---
  void Post(std::function<void()> task) { loop_->Post(std::move(task)); }
  ManagedVm* Find(const std::string& vm_id);
  absl::StatusOr<ManagedVm*> FindOr(const std::string& vm_id);
  // FindOr, then the phase table's verdict for `op`.
  absl::StatusOr<ManagedVm*> FindIn(const std::string& vm_id, Op op);
  // Records a change: the next resource version (its reservation saved
  // first when it runs out), the record on disk, then the registry (so
  // readers and watchers see it). The registry always gets the change: it
  // happened. A record that could not be saved is marked dirty and saved
  // again on every tick until it is; Commit then returns UNAVAILABLE naming
  // the state directory, and an API call that made the change answers that
  // (durable before OK). Publish is for changes nobody waits on: it logs.
  absl::Status Commit(ManagedVm* entry, hearth::v1::WatchEvent::Type type);
  void Publish(ManagedVm* entry, hearth::v1::WatchEvent::Type type);
  absl::Status CommitState(ManagedVm* entry, hearth::v1::VmState state, std::string reason);
  void SetState(ManagedVm* entry, hearth::v1::VmState state, std::string reason);
  // Saves the version reservation if `version` is beyond it.
  absl::Status ReserveVersion(uint64_t version);
  // Saves what could not be saved before (a full disk that has room again).
  void SaveDirty();
  // A new CONFIGURING VM with its VMM spawned (INTERNAL, and the VM
  // FAILED, if the VMM could not be started).
  absl::Status AddVm(const std::string& vm_id, const Labels& labels,
                     const hearth::v1::VmConfig& spec, const hearth::v1::VmConfig& created_config,
                     const std::string& clone_key);
  void FinishDelete(ManagedVm* entry);
  // The lowest uid at or above vmm_uid_base that no other VM holds.
  uint32_t FreeUid(const ManagedVm* except) const;

  // --- vm_supervisor.cc ---
  absl::Status SpawnVmm(ManagedVm* entry);
  void Reattach(ManagedVm* entry);
  // Serves a launched VMM: its exit fd and control channel on the loop.
  absl::Status Supervise(ManagedVm* entry, VmmProcess handle);
  absl::Status WatchConsole(ManagedVm* entry, UniqueFd console);
  void WhenReady(ManagedVm* entry, std::function<void(absl::Status)> action);
  // Sends a request; `done` gets the response (or why there is none).
  void Call(ManagedVm* entry, hearth::vmm::v1::Request request, std::vector<UniqueFd> fds,
            std::function<void(absl::StatusOr<hearth::vmm::v1::Response>)> done,
            std::optional<absl::Duration> timeout = std::nullopt);
  // Fails the requests whose VMM has not answered by their deadline.
  void ExpireCalls();
  void OnControlReadable(const std::string& vm_id);
  void OnEvent(ManagedVm* entry, const hearth::vmm::v1::Event& event);
  void ConnectVsock(ManagedVm* entry, uint64_t request_id, uint32_t port);
  void OnConsoleReadable(const std::string& vm_id);
  void OnProcessExit(const std::string& vm_id);
  void CleanUpProcess(ManagedVm* entry);
  // Stops serving fd on the loop (if it is served).
  void StopServing(int fd);

  // --- vm_runtime.cc ---
  // The one path every start takes (InstanceStart, LoadSnapshot, each
  // clone): the VM's resources as fds, cgroup limits, STARTING, wait for
  // the VMM's Ready, send `request` (Boot or LoadSnapshot), and on its
  // answer RUNNING (or PAUSED) or the failure.
  struct StartPlan {
    hearth::vmm::v1::Request request;
    bool boot = true;                 // Boot: the kernel and initrd too; else a snapshot load
    std::vector<UniqueFd> extra_fds;  // appended after the resources (snapshot files)
    const char* reason = "booting";
    hearth::v1::VmState success_state = hearth::v1::VM_STATE_RUNNING;
    std::string success_reason;
    // A load refused before anything was built: the VM goes back to
    // CONFIGURING with this spec (boot refusals fail the VM).
    std::optional<hearth::v1::VmConfig> previous_spec;
    absl::Duration timeout = absl::Seconds(30);
  };
  void RunStart(ManagedVm* entry, StartPlan plan, Done<hearth::v1::Vm> done);
  // FAILED_PRECONDITION if another live VM uses this VM's vsock uds_path.
  absl::Status CheckVsockPathFree(const ManagedVm* entry) const;
  // InstanceStart on the supervisor thread, for a VM that may start; the
  // answer goes to `done` and to every start waiter.
  void StartNow(ManagedVm* entry, Done<hearth::v1::Vm> done);
  void OnStartAnswer(const std::string& vm_id, const StartPlan& plan,
                     absl::StatusOr<hearth::vmm::v1::Response> response, Done<hearth::v1::Vm> done);
  // Sends `request` to the VMM of a VM `op` is allowed for and hands the
  // response to `then`; `fail` gets every error.
  void Forward(const std::string& vm_id, Op op, hearth::vmm::v1::Request request,
               std::function<void(absl::Status)> fail,
               std::function<void(ManagedVm*, const hearth::vmm::v1::Response&)> then);

  // --- vm_snapshots.cc ---
  // Restores a snapshot into the CONFIGURING VM `vm_id` (LoadSnapshot and
  // each clone of CloneVm).
  void RestoreInto(const std::string& vm_id, const hearth::v1::SnapshotLoadParams& params,
                   std::vector<hearth::v1::DriveOverride> drive_overrides,
                   Done<hearth::v1::Vm> done);
  void CloneOnLoop(const hearth::v1::CloneVmRequest& request,
                   Done<hearth::v1::CloneVmResponse> done);

  const ManagerOptions options_;
  const StateStore store_;
  const ImageRoots roots_;
  const std::unique_ptr<VmmLauncher> launcher_;
  Registry registry_;
  std::unique_ptr<EventLoop> loop_;
  std::optional<TimerFd> call_timer_;
  std::thread thread_;

  // Supervisor thread only.
  std::map<std::string, std::unique_ptr<ManagedVm>> entries_;
  // Paths a CreateSnapshot is writing now.
  std::set<std::string> snapshot_paths_;
  uint64_t reserved_version_ = 0;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_VM_MANAGER_H_
