// The virtio-mmio transport, version 2 register layout (virtio 1.2 §4.2):
// one 4 KiB window per device, announced to Linux on the command line as
// virtio_mmio.device=4K@0xADDR:GSI. Registers are served on vCPU threads;
// activation, reset and queue notifications are handed to the device on the
// event-loop thread. Queue notifications normally bypass the registers
// entirely (an ioeventfd on QueueNotify per queue, see builder.cc).
//
// The status state machine follows §3.1.1: FEATURES_OK is only kept if the
// driver accepted VIRTIO_F_VERSION_1 and nothing the device did not offer;
// DRIVER_OK requires FEATURES_OK and valid queues (else DEVICE_NEEDS_RESET);
// queue registers only change between FEATURES_OK and DRIVER_OK; status
// bits are never cleared except by writing 0, which resets. Anything else
// the driver does wrong is ignored and counted.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_MMIO_TRANSPORT_H_
#define HEARTH_VMM_DEVICES_VIRTIO_MMIO_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"
#include "vmm/bus/bus.h"
#include "vmm/devices/virtio/virtio_device.h"
#include "vmm/devices/virtio/virtio_state.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio {

// Register offsets.
inline constexpr uint64_t kMmioMagicValue = 0x000;
inline constexpr uint64_t kMmioVersion = 0x004;
inline constexpr uint64_t kMmioDeviceId = 0x008;
inline constexpr uint64_t kMmioVendorId = 0x00c;
inline constexpr uint64_t kMmioDeviceFeatures = 0x010;
inline constexpr uint64_t kMmioDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kMmioDriverFeatures = 0x020;
inline constexpr uint64_t kMmioDriverFeaturesSel = 0x024;
inline constexpr uint64_t kMmioQueueSel = 0x030;
inline constexpr uint64_t kMmioQueueNumMax = 0x034;
inline constexpr uint64_t kMmioQueueNum = 0x038;
inline constexpr uint64_t kMmioQueueReady = 0x044;
inline constexpr uint64_t kMmioQueueNotify = 0x050;
inline constexpr uint64_t kMmioInterruptStatus = 0x060;
inline constexpr uint64_t kMmioInterruptAck = 0x064;
inline constexpr uint64_t kMmioStatus = 0x070;
inline constexpr uint64_t kMmioQueueDescLow = 0x080;
inline constexpr uint64_t kMmioQueueDescHigh = 0x084;
inline constexpr uint64_t kMmioQueueDriverLow = 0x090;
inline constexpr uint64_t kMmioQueueDriverHigh = 0x094;
inline constexpr uint64_t kMmioQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kMmioQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kMmioConfigGeneration = 0x0fc;
inline constexpr uint64_t kMmioConfig = 0x100;

inline constexpr uint32_t kMmioMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVendorId = 0x48525448;   // "HTRH"

// Device status bits (§2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Counters of driver mistakes the transport absorbed.
struct TransportMetrics {
  std::atomic<uint64_t> bad_register_accesses{0};
  std::atomic<uint64_t> notifications_before_ready{0};
  std::atomic<uint64_t> rejected_features{0};
  std::atomic<uint64_t> activation_failures{0};
};

class MmioTransport : public bus::BusDevice {
 public:
  MmioTransport(std::shared_ptr<VirtioDevice> device, memory::GuestMemory* memory,
                EventLoop* event_loop, std::unique_ptr<devices::Interrupt> interrupt_line);

  void Read(uint64_t offset, absl::Span<uint8_t> data) override;
  void Write(uint64_t offset, absl::Span<const uint8_t> data) override;

  // Queue `index` was kicked (from its ioeventfd); event-loop thread.
  void Notify(uint32_t index);

  // Snapshots (event-loop thread, vCPUs paused): registers, queues and the
  // device's own state; restore re-activates a device the driver had
  // running, synchronously.
  // (vmm/devices/virtio/persist.h converts the state to the snapshot
  // format.)
  absl::StatusOr<VirtioState> SaveState() const;
  absl::Status RestoreState(const VirtioState& state);

  VirtioDevice* device() const { return device_.get(); }
  size_t queue_count() const { return queue_count_; }
  const TransportMetrics& metrics() const { return metrics_; }
  // Interrupts the device raised that could not be delivered.
  uint64_t interrupt_failures() const { return interrupt_.line_failures(); }
  uint32_t status() const;

 private:
  uint32_t ReadRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void WriteRegister(uint64_t offset, uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void WriteStatus(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  QueueConfig* SelectedQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  bool QueuesWritable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // What the device is activated with: the queues the driver set up.
  absl::StatusOr<ActivateContext> MakeContextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::shared_ptr<VirtioDevice> device_;
  memory::GuestMemory* const memory_;
  EventLoop* const event_loop_;
  VirtioInterrupt interrupt_;
  TransportMetrics metrics_;
  // queues_.size(), fixed at construction: readable without the mutex.
  const size_t queue_count_;
  // Set on the event-loop thread once the device runs.
  bool active_ = false;

  mutable absl::Mutex mutex_;
  std::vector<QueueConfig> queues_ ABSL_GUARDED_BY(mutex_);
  uint32_t status_ ABSL_GUARDED_BY(mutex_) = 0;
  uint32_t device_features_sel_ ABSL_GUARDED_BY(mutex_) = 0;
  uint32_t driver_features_sel_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t driver_features_ ABSL_GUARDED_BY(mutex_) = 0;
  uint32_t queue_sel_ ABSL_GUARDED_BY(mutex_) = 0;
  // Incremented by every reset, so a stale activation posted before a reset
  // is dropped.
  uint64_t epoch_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_MMIO_TRANSPORT_H_
