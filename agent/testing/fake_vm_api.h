// FakeVmApi: a VmApi that keeps VMs as plain values, for testing the gRPC
// service without a manager. It records what reached it, answers with
// configurable errors, and exposes the watch sinks and console buffers so
// a test can drive the streams.
#ifndef HEARTH_AGENT_TESTING_FAKE_VM_API_H_
#define HEARTH_AGENT_TESTING_FAKE_VM_API_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/registry.h"
#include "agent/vm_api.h"

namespace hearth::agent::testing {

class FakeVmApi final : public VmApi {
 public:
  explicit FakeVmApi(ImageRoots roots) : roots_(std::move(roots)) {}

  // A VM in `state` with `spec`.
  void Add(const std::string& vm_id, hearth::v1::VmState state, hearth::v1::VmConfig spec = {}) {
    absl::MutexLock lock(&mutex_);
    hearth::v1::Vm& vm = vms_[vm_id];
    vm.set_vm_id(vm_id);
    vm.set_state(state);
    *vm.mutable_spec() = std::move(spec);
    consoles_[vm_id] = std::make_shared<ConsoleBuffer>(64 * 1024);
  }
  // The next call that reaches the fake fails with `status`.
  void FailNext(absl::Status status) {
    absl::MutexLock lock(&mutex_);
    fail_ = std::move(status);
  }
  // The names of the calls that reached the fake, in order.
  std::vector<std::string> calls() const {
    absl::MutexLock lock(&mutex_);
    return calls_;
  }
  // Sends `event` to every watcher.
  void Emit(const hearth::v1::WatchEvent& event) {
    absl::MutexLock lock(&mutex_);
    for (auto& [id, sink] : sinks_) sink(event);
  }
  size_t watchers() const {
    absl::MutexLock lock(&mutex_);
    return sinks_.size();
  }
  std::string console_input() const {
    absl::MutexLock lock(&mutex_);
    return input_;
  }

  const ImageRoots& roots() const override { return roots_; }

  void CreateVm(const hearth::v1::CreateVmRequest& request, Done<hearth::v1::Vm> done) override {
    absl::Status failed = Enter("CreateVm");
    if (!failed.ok()) return done(failed);
    Add(request.vm_id(), hearth::v1::VM_STATE_CONFIGURING, request.config());
    done(*GetVm(request.vm_id()));
  }
  void DeleteVm(const std::string& vm_id, bool, Done<bool> done) override {
    absl::Status failed = Enter("DeleteVm");
    if (!failed.ok()) return done(failed);
    absl::MutexLock lock(&mutex_);
    done(vms_.erase(vm_id) > 0);
  }
  absl::StatusOr<hearth::v1::Vm> GetVm(const std::string& vm_id) const override {
    absl::MutexLock lock(&mutex_);
    auto it = vms_.find(vm_id);
    if (it == vms_.end()) return VmNotFound(vm_id);
    return it->second;
  }
  absl::StatusOr<hearth::v1::ListVmsResponse> ListVms(
      const hearth::v1::ListVmsRequest&) const override {
    absl::MutexLock lock(&mutex_);
    hearth::v1::ListVmsResponse response;
    for (const auto& [id, vm] : vms_) *response.add_vms() = vm;
    return response;
  }
  hearth::v1::HostInfo GetHostInfo() const override {
    hearth::v1::HostInfo info;
    info.set_hostname("fake");
    return info;
  }
  absl::StatusOr<int> Watch(const hearth::v1::WatchVmsRequest& request,
                            std::function<void(const hearth::v1::WatchEvent&)> sink) override {
    absl::Status failed = Enter("Watch");
    if (!failed.ok()) return failed;
    absl::MutexLock lock(&mutex_);
    if (request.resource_version() > 100) {
      return absl::OutOfRangeError("resource_version is in the future");
    }
    int id = next_watch_++;
    sinks_[id] = std::move(sink);
    return id;
  }
  void Unwatch(int id) override {
    absl::MutexLock lock(&mutex_);
    sinks_.erase(id);
  }
  absl::StatusOr<std::shared_ptr<ConsoleBuffer>> Console(const std::string& vm_id) const override {
    absl::MutexLock lock(&mutex_);
    auto it = consoles_.find(vm_id);
    if (it == consoles_.end()) return VmNotFound(vm_id);
    return it->second;
  }
  void ConsoleInput(const std::string&, std::string data) override {
    absl::MutexLock lock(&mutex_);
    input_ += data;
  }
  void CloneVm(const hearth::v1::CloneVmRequest&, Done<hearth::v1::CloneVmResponse> done) override {
    absl::Status failed = Enter("CloneVm");
    if (!failed.ok()) return done(failed);
    done(hearth::v1::CloneVmResponse());
  }
  void Configure(const std::string& vm_id,
                 std::function<absl::Status(hearth::v1::VmConfig*)> mutate,
                 Done<hearth::v1::VmConfig> done) override {
    absl::Status failed = Enter("Configure");
    if (!failed.ok()) return done(failed);
    absl::MutexLock lock(&mutex_);
    auto it = vms_.find(vm_id);
    if (it == vms_.end()) return done(VmNotFound(vm_id));
    hearth::v1::VmConfig config = it->second.spec();
    absl::Status changed = mutate(&config);
    if (!changed.ok()) return done(changed);
    *it->second.mutable_spec() = config;
    done(config);
  }
  absl::StatusOr<hearth::v1::VmConfig> GetConfig(const std::string& vm_id) const override {
    absl::StatusOr<hearth::v1::Vm> vm = GetVm(vm_id);
    if (!vm.ok()) return vm.status();
    return vm->spec();
  }
  void InstanceStart(const std::string& vm_id, Done<hearth::v1::Vm> done) override {
    Answer("InstanceStart", vm_id, done);
  }
  void SendCtrlAltDel(const std::string& vm_id, Done<bool> done) override {
    absl::Status failed = Enter("SendCtrlAltDel");
    if (!failed.ok()) return done(failed);
    done(GetVm(vm_id).ok());
  }
  void FlushMetrics(const std::string&, Done<std::string> done) override {
    absl::Status failed = Enter("FlushMetrics");
    if (!failed.ok()) return done(failed);
    done(std::string("{}"));
  }
  void SetVmState(const std::string& vm_id, const std::string& state,
                  Done<hearth::v1::Vm> done) override {
    Answer(absl::StrCat("SetVmState ", state), vm_id, done);
  }
  void PatchDrive(const hearth::v1::PartialDrive& patch, const std::string&,
                  Done<hearth::v1::Drive> done) override {
    absl::Status failed = Enter("PatchDrive");
    if (!failed.ok()) return done(failed);
    hearth::v1::Drive drive;
    drive.set_drive_id(patch.drive_id());
    done(drive);
  }
  void PatchNetworkInterface(const hearth::v1::PartialNetworkInterface& patch, const std::string&,
                             Done<hearth::v1::NetworkInterface> done) override {
    absl::Status failed = Enter("PatchNetworkInterface");
    if (!failed.ok()) return done(failed);
    hearth::v1::NetworkInterface iface;
    iface.set_iface_id(patch.iface_id());
    done(iface);
  }
  void PatchBalloon(const std::string&, uint32_t amount_mib,
                    Done<hearth::v1::Balloon> done) override {
    absl::Status failed = Enter("PatchBalloon");
    if (!failed.ok()) return done(failed);
    hearth::v1::Balloon balloon;
    balloon.set_amount_mib(amount_mib);
    done(balloon);
  }
  void PatchBalloonStatistics(const std::string&, uint32_t interval_s,
                              Done<hearth::v1::Balloon> done) override {
    absl::Status failed = Enter("PatchBalloonStatistics");
    if (!failed.ok()) return done(failed);
    hearth::v1::Balloon balloon;
    balloon.set_stats_polling_interval_s(interval_s);
    done(balloon);
  }
  void GetBalloonStatistics(const std::string&, Done<hearth::v1::BalloonStatistics> done) override {
    absl::Status failed = Enter("GetBalloonStatistics");
    if (!failed.ok()) return done(failed);
    done(hearth::v1::BalloonStatistics());
  }
  void CreateSnapshot(const std::string&, const hearth::v1::SnapshotCreateParams&,
                      Done<hearth::v1::CreateSnapshotResponse> done) override {
    absl::Status failed = Enter("CreateSnapshot");
    if (!failed.ok()) return done(failed);
    done(hearth::v1::CreateSnapshotResponse());
  }
  void LoadSnapshot(const std::string& vm_id, const hearth::v1::SnapshotLoadParams&,
                    Done<hearth::v1::Vm> done) override {
    Answer("LoadSnapshot", vm_id, done);
  }

 private:
  absl::Status Enter(const std::string& call) {
    absl::MutexLock lock(&mutex_);
    calls_.push_back(call);
    absl::Status failed = std::move(fail_);
    fail_ = absl::OkStatus();
    return failed;
  }
  void Answer(const std::string& call, const std::string& vm_id, Done<hearth::v1::Vm> done) {
    absl::Status failed = Enter(call);
    if (!failed.ok()) return done(failed);
    done(GetVm(vm_id));
  }

  const ImageRoots roots_;
  mutable absl::Mutex mutex_;
  std::map<std::string, hearth::v1::Vm> vms_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::shared_ptr<ConsoleBuffer>> consoles_ ABSL_GUARDED_BY(mutex_);
  std::map<int, std::function<void(const hearth::v1::WatchEvent&)>> sinks_ ABSL_GUARDED_BY(mutex_);
  int next_watch_ ABSL_GUARDED_BY(mutex_) = 1;
  absl::Status fail_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mutex_);
  std::string input_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace hearth::agent::testing

#endif  // HEARTH_AGENT_TESTING_FAKE_VM_API_H_
