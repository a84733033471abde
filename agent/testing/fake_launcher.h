// FakeLauncher: a VmmLauncher whose VMMs are FakeVmms in this process. The
// FakeHost holds them, so they outlive one manager: a test can stop the
// manager ("SIGKILL of hearthd"), start a new one over the same state
// directory, and watch it re-attach. No process, cgroup, jail or
// namespace is created; what the manager asked for is recorded.
#ifndef HEARTH_AGENT_TESTING_FAKE_LAUNCHER_H_
#define HEARTH_AGENT_TESTING_FAKE_LAUNCHER_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/launcher.h"
#include "agent/testing/fake_vmm.h"

namespace hearth::agent::testing {

class FakeHost {
 public:
  // The newest VMM of a VM (nullptr if none was started).
  std::shared_ptr<FakeVmm> Vmm(const std::string& vm_id) const;
  // Every VMM started, ended or not.
  std::vector<std::shared_ptr<FakeVmm>> All() const;
  // VMMs that have not ended.
  int Live() const;

  // Knobs: the next Spawn (of `vm_id`, or of any VM for "") / ApplyLimits
  // fails with `status`.
  void FailNextSpawn(absl::Status status, const std::string& vm_id = "");
  void FailNextLimits(absl::Status status);
  // Spawned VMMs hold their Ready until released.
  void HoldReady(bool hold);
  // Runs on every VMM spawned from now on, before it is bound (to set its
  // knobs: FailNext, Hang, ...).
  void OnSpawn(std::function<void(FakeVmm&)> hook);

  // What the manager asked for.
  std::multiset<std::string> released() const;
  std::multiset<std::string> removed_run_dirs() const;
  std::vector<uint32_t> uids() const;

 private:
  friend class FakeLauncher;
  mutable absl::Mutex mutex_;
  std::map<std::string, std::shared_ptr<FakeVmm>> vmms_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::shared_ptr<FakeVmm>> all_ ABSL_GUARDED_BY(mutex_);
  int next_pid_ ABSL_GUARDED_BY(mutex_) = 100000;
  std::map<std::string, absl::Status> fail_spawn_ ABSL_GUARDED_BY(mutex_);
  absl::Status fail_limits_ ABSL_GUARDED_BY(mutex_);
  bool hold_ready_ ABSL_GUARDED_BY(mutex_) = false;
  std::function<void(FakeVmm&)> on_spawn_ ABSL_GUARDED_BY(mutex_);
  std::multiset<std::string> released_ ABSL_GUARDED_BY(mutex_);
  std::multiset<std::string> removed_run_dirs_ ABSL_GUARDED_BY(mutex_);
  std::vector<uint32_t> uids_ ABSL_GUARDED_BY(mutex_);
};

class FakeLauncher final : public VmmLauncher {
 public:
  explicit FakeLauncher(std::shared_ptr<FakeHost> host) : host_(std::move(host)) {}

  int cgroup_version() const override { return 2; }
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
  std::shared_ptr<FakeVmm> ByPid(int pid) const;

  const std::shared_ptr<FakeHost> host_;
};

}  // namespace hearth::agent::testing

#endif  // HEARTH_AGENT_TESTING_FAKE_LAUNCHER_H_
