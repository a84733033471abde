// ManagerHarness: a VmManager over temporary state and image directories
// with a FakeLauncher, for in-process tests of the agent (no KVM, no
// root). Calls are made synchronous with Await; Restart plays an agent
// that dies and comes back over the same state directory, its fake VMMs
// still running.
#ifndef HEARTH_AGENT_TESTING_MANAGER_HARNESS_H_
#define HEARTH_AGENT_TESTING_MANAGER_HARNESS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "agent/testing/fake_launcher.h"
#include "agent/vm_manager.h"

namespace hearth::agent::testing {

class ManagerHarness {
 public:
  // `options`: capacity, timeouts, ...; the directories are filled in.
  explicit ManagerHarness(ManagerOptions options = DefaultOptions());
  ~ManagerHarness();

  static ManagerOptions DefaultOptions();

  VmManager& manager() { return *manager_; }
  FakeHost& host() { return *host_; }
  const std::shared_ptr<FakeHost>& shared_host() const { return host_; }
  const std::string& image_root() const { return image_root_; }
  const std::string& state_dir() const { return state_dir_; }
  // A file in the image root (the fake VMM does not read it).
  const std::string& kernel() const { return kernel_; }

  // From now on, state writes whose path `full` accepts fail with ENOSPC's
  // message (nullptr: the disk has room again).
  void SetDiskFull(std::function<bool(const std::string& path)> full);
  // How many state writes failed so far.
  int failed_writes() const;

  // The agent goes away (its VMMs keep running) and a new one starts.
  void Restart();
  // The two halves of Restart, to act while no agent runs.
  void StopAgent() { manager_.reset(); }
  void StartAgent() { StartManager(); }

  // A CreateVm request for a bootable 1-vCPU, 128 MiB VM.
  hearth::v1::CreateVmRequest CreateRequest(const std::string& vm_id, bool start) const;
  absl::StatusOr<hearth::v1::Vm> Create(const std::string& vm_id, bool start);

  // Runs `call` with a completion and waits (10 s at most) for its result.
  template <typename T>
  absl::StatusOr<T> Await(std::function<void(Done<T>)> call) {
    auto result = std::make_shared<absl::StatusOr<T>>(absl::UnknownError("no answer"));
    auto notified = std::make_shared<absl::Notification>();
    call([result, notified](absl::StatusOr<T> r) {
      *result = std::move(r);
      notified->Notify();
    });
    if (!notified->WaitForNotificationWithTimeout(absl::Seconds(10))) {
      return absl::DeadlineExceededError("the manager did not answer in 10 s");
    }
    return *result;
  }

  // Polls `condition` until it holds (true) or `timeout` passes (false).
  static bool WaitFor(const std::function<bool()>& condition,
                      absl::Duration timeout = absl::Seconds(10));
  // Waits until the VM is in `state`.
  bool WaitForState(const std::string& vm_id, hearth::v1::VmState state);

 private:
  void StartManager();

  struct Disk {
    absl::Mutex mutex;
    std::function<bool(const std::string&)> full ABSL_GUARDED_BY(mutex);
    int failed ABSL_GUARDED_BY(mutex) = 0;
  };
  std::shared_ptr<Disk> disk_ = std::make_shared<Disk>();
  ManagerOptions options_;
  std::string dir_;
  std::string state_dir_;
  std::string image_root_;
  std::string kernel_;
  std::shared_ptr<FakeHost> host_;
  std::unique_ptr<VmManager> manager_;
};

}  // namespace hearth::agent::testing

#endif  // HEARTH_AGENT_TESTING_MANAGER_HARNESS_H_
