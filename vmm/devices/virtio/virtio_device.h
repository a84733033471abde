// The contract between the virtio-mmio transport and a virtio device model
// (block, net, rng, vsock, balloon). The transport owns the registers, the
// feature and status negotiation and the queue configuration; the device
// knows only its features, its config space and what to do with requests.
//
// Threads: ReadConfig/WriteConfig run on vCPU threads (the device guards
// its config space); Activate, ProcessQueue and Reset run on the VMM's
// event-loop thread, which is also where the device's backend fds (tap,
// sockets, timers) are served.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_VIRTIO_DEVICE_H_
#define HEARTH_VMM_DEVICES_VIRTIO_VIRTIO_DEVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/event_loop.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/virtio/device_metrics.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/devices/virtio/virtio_state.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio {

// Feature bits every device may offer (virtio 1.2 §6).
inline constexpr uint64_t kFeatureIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFeatureEventIdx = 1ull << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;

// Device ids (virtio 1.2 §5).
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceRng = 4;
inline constexpr uint32_t kDeviceBalloon = 5;
inline constexpr uint32_t kDeviceVsock = 19;

// The transport's interrupt status register plus the device's interrupt
// line (an irqfd). Devices call Signal*; the transport reads and acks.
class VirtioInterrupt {
 public:
  static constexpr uint32_t kUsedBuffer = 1;
  static constexpr uint32_t kConfigChange = 2;

  explicit VirtioInterrupt(std::unique_ptr<devices::Interrupt> line) : line_(std::move(line)) {}
  void SignalUsedBuffer() { Signal(kUsedBuffer); }
  void SignalConfigChange() { Signal(kConfigChange); }
  uint32_t status() const { return status_.load(); }
  uint64_t line_failures() const { return line_->failures(); }
  void Acknowledge(uint32_t bits) { status_.fetch_and(~bits); }
  void Clear() { status_ = 0; }
  // Snapshot restore: the status as saved, and the line raised again if
  // anything was pending (a spurious interrupt is harmless to a driver).
  void Restore(uint32_t bits) {
    status_ = bits;
    if (bits != 0) line_->Trigger();
  }

 private:
  void Signal(uint32_t bit) {
    status_.fetch_or(bit);
    line_->Trigger();
  }
  std::unique_ptr<devices::Interrupt> line_;
  std::atomic<uint32_t> status_{0};
};

struct ActivateContext {
  memory::GuestMemory* memory = nullptr;
  // Indexed like the device's queues; empty where the driver did not set a
  // queue up (e.g. balloon statistics when that feature was not accepted).
  std::vector<std::optional<Queue>> queues;
  VirtioInterrupt* interrupt = nullptr;
  EventLoop* event_loop = nullptr;
  uint64_t acked_features = 0;
  // Tells the driver the device is unusable until reset (sets
  // DEVICE_NEEDS_RESET and raises a config-change interrupt); for a queue
  // the driver broke.
  std::function<void()> needs_reset;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_type() const = 0;
  // Offered features; always includes kFeatureVersion1.
  virtual uint64_t features() const = 0;
  // One entry per queue: the largest size the device accepts.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  // "block rootfs", for logs and errors.
  virtual std::string name() const = 0;

  // Device-specific configuration space (virtio-mmio offset 0x100 on).
  // Out-of-range accesses read zeros and are ignored on write.
  virtual void ReadConfig(uint64_t offset, absl::Span<uint8_t> data);
  virtual void WriteConfig(uint64_t offset, absl::Span<const uint8_t> data);
  // Bumped whenever the device changes its config space on its own.
  virtual uint32_t config_generation() const { return 0; }

  // The driver set DRIVER_OK: queues are valid and in guest RAM. The device
  // must process anything already available (kicks may have come first).
  virtual absl::Status Activate(ActivateContext context) = 0;
  // The driver kicked queue `index`.
  virtual void ProcessQueue(size_t index) = 0;
  // The driver reset the device: drop queues, stop serving backends.
  virtual void Reset() = 0;

  // Snapshots, on the event-loop thread while the vCPUs are paused.
  // What Activate was given, while the device runs (the transport saves
  // the queues' positions from it); nullptr otherwise. A device that
  // returns nullptr while active cannot be snapshotted.
  virtual const ActivateContext* activated() const { return nullptr; }
  // The device's own state beyond its queues (into state->device).
  virtual void SaveState(VirtioState* state) const;
  // Restore: RestoreState runs first, then Activate with the restored
  // queues (which processes whatever the driver had made available), then
  // Restored.
  virtual absl::Status RestoreState(const VirtioState& state);
  virtual void Restored() {}
};

// The next well-formed chain on queue `index`, or nothing when the queue is
// empty or broken. Malformed chains on the way are completed with length 0
// (setting *used) and counted; a ring the driver broke is counted once and
// reported with DEVICE_NEEDS_RESET. Every device's processing loop starts
// with it.
std::optional<DescriptorChain> NextChain(ActivateContext* context, size_t index,
                                         DeviceMetrics* metrics, bool* used);

// Raises the used-buffer interrupt if the driver wants one for what was
// published on `queue` since the last call.
void SignalUsed(ActivateContext* context, Queue* queue, DeviceMetrics* metrics);

// Copies `data.size()` bytes of `config` at `offset` into `data`, zeros where
// out of range. A helper for ReadConfig implementations.
void ReadConfigBytes(absl::Span<const uint8_t> config, uint64_t offset, absl::Span<uint8_t> data);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_VIRTIO_DEVICE_H_
