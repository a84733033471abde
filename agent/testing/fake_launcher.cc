#include "agent/testing/fake_launcher.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace hearth::agent::testing {

namespace state = ::hearth::agent::v1;

std::shared_ptr<FakeVmm> FakeHost::Vmm(const std::string& vm_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = vmms_.find(vm_id);
  return it == vmms_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<FakeVmm>> FakeHost::All() const {
  absl::MutexLock lock(&mutex_);
  return all_;
}

int FakeHost::Live() const {
  int live = 0;
  for (const auto& vmm : All()) live += !vmm->exited();
  return live;
}

void FakeHost::FailNextSpawn(absl::Status status, const std::string& vm_id) {
  absl::MutexLock lock(&mutex_);
  fail_spawn_[vm_id] = std::move(status);
}

void FakeHost::FailNextLimits(absl::Status status) {
  absl::MutexLock lock(&mutex_);
  fail_limits_ = std::move(status);
}

void FakeHost::HoldReady(bool hold) {
  absl::MutexLock lock(&mutex_);
  hold_ready_ = hold;
}

void FakeHost::OnSpawn(std::function<void(FakeVmm&)> hook) {
  absl::MutexLock lock(&mutex_);
  on_spawn_ = std::move(hook);
}

std::multiset<std::string> FakeHost::released() const {
  absl::MutexLock lock(&mutex_);
  return released_;
}

std::multiset<std::string> FakeHost::removed_run_dirs() const {
  absl::MutexLock lock(&mutex_);
  return removed_run_dirs_;
}

std::vector<uint32_t> FakeHost::uids() const {
  absl::MutexLock lock(&mutex_);
  return uids_;
}

void FakeLauncher::Plan(state::VmRecord* record, uint32_t uid) {
  const std::string& vm_id = record->vm().vm_id();
  record->set_uid(uid);
  record->set_run_dir(absl::StrCat("/fake/run/", vm_id));
  record->clear_cgroup_dirs();
  record->add_cgroup_dirs(absl::StrCat("/fake/cgroup/", vm_id));
}

absl::StatusOr<VmmProcess> FakeLauncher::Spawn(state::VmRecord* record) {
  const std::string& vm_id = record->vm().vm_id();
  const uint32_t uid = record->uid();
  std::shared_ptr<FakeVmm> vmm;
  bool hold = false;
  std::function<void(FakeVmm&)> hook;
  {
    absl::MutexLock lock(&host_->mutex_);
    for (const std::string& key : {vm_id, std::string()}) {
      auto it = host_->fail_spawn_.find(key);
      if (it == host_->fail_spawn_.end()) continue;
      absl::Status failed = std::move(it->second);
      host_->fail_spawn_.erase(it);
      return failed;
    }
    vmm = std::make_shared<FakeVmm>(vm_id, host_->next_pid_++);
    host_->vmms_[vm_id] = vmm;
    host_->all_.push_back(vmm);
    host_->uids_.push_back(uid);
    hold = host_->hold_ready_;
    hook = host_->on_spawn_;
  }
  if (hook) hook(*vmm);
  absl::StatusOr<std::pair<MessageChannel, MessageChannel>> pair = MessageChannel::CreatePair();
  if (!pair.ok()) return pair.status();
  if (hold) vmm->HoldReady();
  vmm->Bind(std::move(pair->second));
  record->set_pid(vmm->pid());
  record->set_pid_start_time(1);
  VmmProcess process;
  process.pid = vmm->pid();
  process.start_time = 1;
  process.exit_fd = vmm->DupExitFd();
  process.control = UniqueFd(::dup(pair->first.fd()));
  process.child = true;
  return process;
}

absl::StatusOr<VmmProcess> FakeLauncher::Reattach(const state::VmRecord& record) {
  // A record with no pid: found by its VM, as the real one finds it by its
  // run directory's socket.
  std::shared_ptr<FakeVmm> vmm =
      record.pid() > 0 ? ByPid(record.pid()) : host_->Vmm(record.vm().vm_id());
  if (record.pid() <= 0 && (vmm == nullptr || vmm->exited())) {
    return absl::NotFoundError("no VMM runs for it (the agent stopped before it recorded one)");
  }
  if (vmm == nullptr || vmm->exited()) {
    return absl::NotFoundError("the VMM exited while the agent was down");
  }
  if (vmm->unreachable()) {
    vmm->Kill();
    return absl::UnavailableError(absl::StrCat("cannot re-attach to the VMM (pid ", vmm->pid(),
                                               "): connection refused; the VMM was killed"));
  }
  absl::StatusOr<std::pair<MessageChannel, MessageChannel>> pair = MessageChannel::CreatePair();
  if (!pair.ok()) return pair.status();
  vmm->Bind(std::move(pair->second));
  VmmProcess process;
  process.pid = vmm->pid();
  process.start_time = 1;
  process.exit_fd = vmm->DupExitFd();
  process.control = UniqueFd(::dup(pair->first.fd()));
  process.child = false;
  return process;
}

absl::Status FakeLauncher::Kill(const VmmProcess& process) {
  if (std::shared_ptr<FakeVmm> vmm = ByPid(process.pid)) vmm->Kill();
  return absl::OkStatus();
}

std::optional<ExitStatus> FakeLauncher::Reap(const VmmProcess& process) {
  std::shared_ptr<FakeVmm> vmm = ByPid(process.pid);
  if (!process.child || vmm == nullptr) return std::nullopt;
  return vmm->exit_status();
}

absl::Status FakeLauncher::ApplyLimits(const state::VmRecord&, const hearth::v1::VmConfig&) {
  absl::MutexLock lock(&host_->mutex_);
  absl::Status status = std::move(host_->fail_limits_);
  host_->fail_limits_ = absl::OkStatus();
  return status;
}

void FakeLauncher::Release(const state::VmRecord& record) {
  absl::MutexLock lock(&host_->mutex_);
  host_->released_.insert(record.vm().vm_id());
}

void FakeLauncher::RemoveRunDir(const state::VmRecord& record) {
  absl::MutexLock lock(&host_->mutex_);
  host_->removed_run_dirs_.insert(record.vm().vm_id());
}

std::string FakeLauncher::LogTail(const state::VmRecord& record) {
  std::shared_ptr<FakeVmm> vmm = ByPid(record.pid());
  return vmm == nullptr ? "" : vmm->log();
}

std::shared_ptr<FakeVmm> FakeLauncher::ByPid(int pid) const {
  for (const auto& vmm : host_->All()) {
    if (vmm->pid() == pid) return vmm;
  }
  return nullptr;
}

}  // namespace hearth::agent::testing
