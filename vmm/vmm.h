// Vmm: one running microVM. Owns the KVM VM, guest memory, the buses and
// devices, one VcpuRunner per vCPU and the event loop that serves device
// backends, console input and vCPU exits. Built by builder.h (or restored
// by snapshot/snapshot.h); run by main.cc in both modes, the control server
// acting on it in agent mode.
//
// Threads: the caller's thread runs the event loop (Run); each vCPU has its
// own thread. Devices are reached from vCPU threads through the buses and
// from the event loop; they guard their own state.
#ifndef HEARTH_VMM_VMM_H_
#define HEARTH_VMM_VMM_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event_fd.h"
#include "common/event_loop.h"
#include "common/timer_fd.h"
#include "common/unique_fd.h"
#include "hearth/v1/config.pb.h"
#include "vmm/bus/bus.h"
#include "vmm/devices/legacy/i8042.h"
#include "vmm/devices/legacy/serial.h"
#include "vmm/devices/virtio/balloon/balloon.h"
#include "vmm/devices/virtio/block/block.h"
#include "vmm/devices/virtio/mmio_transport.h"
#include "vmm/devices/virtio/net/net.h"
#include "vmm/devices/virtio/rng/rng.h"
#include "vmm/devices/virtio/vsock/vsock.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu/vcpu_runner.h"

namespace hearth::vmm {

// hearth-vmm's version: in the Ready event, GetInfo and every snapshot.
inline constexpr char kVmmVersion[] = "0.1.0";

// How the guest ended.
struct VmOutcome {
  enum class Kind { kReset, kPowerOff, kTripleFault, kError, kStopped };
  Kind kind = Kind::kStopped;
  std::string reason;
  // Reset and power-off are how a guest ends normally.
  bool clean() const {
    return kind == Kind::kReset || kind == Kind::kPowerOff || kind == Kind::kStopped;
  }
};

const char* OutcomeName(VmOutcome::Kind kind);

class Vmm {
 public:
  // One virtio-mmio device: its transport (on the MMIO bus), the eventfds
  // KVM signals on QueueNotify writes (one per queue), where it lives.
  struct VirtioSlot {
    std::shared_ptr<virtio::MmioTransport> transport;
    std::vector<EventFd> notify_events;
    uint64_t mmio_base = 0;
    uint32_t gsi = 0;
  };

  // Everything the builder assembles; see builder.h. Members are destroyed
  // bottom-up: devices before the event loop and memory they use.
  struct Parts {
    kvm::Kvm kvm;
    // On the heap: devices keep pointers to the VM, memory and loop.
    std::unique_ptr<kvm::Vm> vm;
    std::unique_ptr<memory::GuestMemory> memory;
    std::unique_ptr<EventLoop> event_loop = nullptr;
    std::unique_ptr<bus::Bus> pio_bus = nullptr;
    std::unique_ptr<bus::Bus> mmio_bus = nullptr;
    // Signalled by the i8042 when the guest pulses the reset line.
    std::shared_ptr<EventFd> reset_event = nullptr;
    std::shared_ptr<devices::Serial> serial = nullptr;
    std::shared_ptr<devices::I8042> i8042 = nullptr;
    std::vector<VirtioSlot> virtio = {};
    // Typed handles on the virtio devices, for run-time updates and metrics.
    std::vector<std::shared_ptr<virtio::Block>> blocks = {};
    std::vector<std::shared_ptr<virtio::Net>> nets = {};
    std::shared_ptr<virtio::Rng> rng = nullptr;
    std::shared_ptr<virtio::Balloon> balloon = nullptr;
    std::shared_ptr<virtio::Vsock> vsock = nullptr;
    std::vector<kvm::Vcpu> vcpus = {};
    // Where metrics lines go (standalone: the config's metrics_path).
    UniqueFd metrics_file = {};
    // The configuration the VM was built from (snapshots record it).
    hearth::v1::VmConfig api_config = {};
    // Each vCPU's CPUID table, as the guest sees it.
    std::vector<kvm::CpuidEntries> cpuid = {};
    // Memory slots log dirty pages (KVM_MEM_LOG_DIRTY_PAGES): Diff
    // snapshots are possible.
    bool track_dirty_pages = false;
  };

  static absl::StatusOr<std::unique_ptr<Vmm>> Create(Parts parts);
  ~Vmm();
  Vmm(const Vmm&) = delete;
  Vmm& operator=(const Vmm&) = delete;

  // Console input (stdin in standalone mode): bytes read from `fd` are fed
  // to the serial port as the guest drains its FIFO.
  absl::Status AttachConsoleInput(int fd);
  // Switches console input from `old_fd` to `new_fd` (event-loop thread).
  absl::Status ReplaceConsoleInput(int old_fd, int new_fd);

  // Starts every vCPU thread; `on_vcpu_thread_start` runs first on each
  // (seccomp filter installation). With `paused` the threads park before
  // entering the guest until Resume (a restored VM left paused).
  absl::Status Start(std::function<absl::Status()> on_vcpu_thread_start = nullptr,
                     bool paused = false);

  // Runs the event loop until the guest ends or Stop() is called, then stops
  // and joins the vCPUs.
  absl::StatusOr<VmOutcome> Run();

  // Ends the VM with `outcome`. Thread-safe; the event loop acts on it.
  void Stop(VmOutcome outcome);

  // Parks every vCPU outside KVM_RUN (FAILED_PRECONDITION if not running).
  absl::Status Pause();
  absl::Status Resume();
  bool paused() const { return paused_; }

  // Injects Ctrl-Alt-Del through the i8042.
  absl::Status SendCtrlAltDel();

  // Every device's counters as one JSON object (one line).
  std::string MetricsJson() const;
  // Appends MetricsJson() to the metrics file, if one was configured, and
  // returns the line.
  absl::StatusOr<std::string> FlushMetrics() const;

  const Parts& parts() const { return parts_; }
  const kvm::Vcpu& vcpu(size_t index) const { return runners_[index]->vcpu(); }

  // The id of the last snapshot taken of (or restored into) this VM; a
  // Diff snapshot names it as its parent.
  uint64_t last_snapshot_id() const { return last_snapshot_id_; }
  void set_last_snapshot_id(uint64_t id) { last_snapshot_id_ = id; }

  EventLoop* event_loop() { return parts_.event_loop.get(); }
  memory::GuestMemory* memory() { return parts_.memory.get(); }
  const kvm::Vm& vm() const { return *parts_.vm; }
  devices::Serial* serial() { return parts_.serial.get(); }
  size_t vcpu_count() const { return runners_.size(); }
  bool started() const { return started_; }

 private:
  Vmm(Parts parts, EventFd exits_event);
  // Event-loop thread: records the first outcome and stops everything.
  void Finish(VmOutcome outcome);
  void DrainExits();
  void PumpConsoleInput();

  Parts parts_;
  std::vector<std::unique_ptr<vcpu::VcpuRunner>> runners_;
  bool started_ = false;
  bool paused_ = false;

  // vCPU threads hand exits to the event loop through this queue.
  absl::Mutex exits_mutex_;
  std::deque<VmOutcome> exits_ ABSL_GUARDED_BY(exits_mutex_);
  EventFd exits_event_;

  uint64_t last_snapshot_id_ = 0;
  int console_input_fd_ = -1;
  std::optional<TimerFd> console_retry_;
  std::optional<VmOutcome> outcome_;
};

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_VMM_H_
