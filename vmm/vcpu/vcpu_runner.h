// VcpuRunner: one thread per vCPU running KVM_RUN in a loop, dispatching
// port I/O and MMIO exits to the buses, and reporting how the guest ended
// (reset, power-off, triple fault, KVM error) to the VMM's event loop.
//
// Another thread interrupts KVM_RUN by setting kvm_run.immediate_exit and
// sending the vCPU thread a signal whose handler does nothing: the ioctl then
// returns EINTR and the loop looks at what was requested (pause, stop).
#ifndef HEARTH_VMM_VCPU_VCPU_RUNNER_H_
#define HEARTH_VMM_VCPU_VCPU_RUNNER_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "vmm/bus/bus.h"
#include "vmm/kvm/kvm.h"

namespace hearth::vcpu {

// Why a vCPU stopped running the guest for good.
struct VcpuExit {
  enum class Kind {
    kReset,        // the guest asked for a reset (i8042 or KVM system event)
    kPowerOff,     // KVM_SYSTEM_EVENT_SHUTDOWN
    kTripleFault,  // KVM_EXIT_SHUTDOWN
    kError,        // KVM error, emulation failure, unexpected exit
  };
  uint32_t vcpu_id = 0;
  Kind kind = Kind::kError;
  // One line, e.g. "KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)
  // at rip=0x100234".
  std::string reason;
};

class VcpuRunner {
 public:
  using ExitCallback = std::function<void(const VcpuExit&)>;

  // Installs the (empty) kick signal handler; call once per process before
  // any runner starts.
  static absl::Status InstallKickSignal();
  static int KickSignal();

  // `on_exit` is called from the vCPU thread, at most once, just before the
  // thread stops running the guest; it must not block.
  VcpuRunner(kvm::Vcpu vcpu, const bus::Bus* pio_bus, const bus::Bus* mmio_bus,
             ExitCallback on_exit);
  ~VcpuRunner();  // stops and joins
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  // `on_thread_start` runs first on the new thread (seccomp installation).
  absl::Status Start(std::function<absl::Status()> on_thread_start = nullptr);
  // Makes the thread leave KVM_RUN and finish. Idempotent; safe from any
  // thread.
  void RequestStop();
  void Join();

  // Pausing: Pause() returns once the vCPU is outside KVM_RUN and parked;
  // Resume() lets it run again.
  void Pause();
  void Resume();

  const kvm::Vcpu& vcpu() const { return vcpu_; }
  uint64_t exits() const { return exits_.load(std::memory_order_relaxed); }

 private:
  void ThreadMain(std::function<absl::Status()> on_thread_start);
  // Returns false when the loop must end.
  bool HandleExit(uint32_t reason);
  void HandleIo();
  void HandleMmio();
  void Finish(VcpuExit::Kind kind, std::string reason);
  void Kick();
  // Blocks while paused; returns false if a stop was requested meanwhile.
  bool WaitWhilePaused();
  std::string DescribeRip() const;

  kvm::Vcpu vcpu_;
  const bus::Bus* pio_bus_;
  const bus::Bus* mmio_bus_;
  ExitCallback on_exit_;
  std::thread thread_;
  std::atomic<pthread_t> native_handle_{};
  std::atomic<bool> thread_started_{false};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> exits_{0};

  absl::Mutex mutex_;
  bool pause_requested_ ABSL_GUARDED_BY(mutex_) = false;
  bool parked_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace hearth::vcpu

#endif  // HEARTH_VMM_VCPU_VCPU_RUNNER_H_
