// virtio-blk (virtio 1.2 §5.2) over a file descriptor: IN, OUT, FLUSH
// (fdatasync) and GET_ID (the drive id as serial). Read-only drives offer
// VIRTIO_BLK_F_RO and fail writes with IOERR. Capacity is the file size in
// 512-byte sectors. I/O is synchronous on the event-loop thread (preadv /
// pwritev straight between the file and guest memory, no copy), like
// Firecracker's Sync engine.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_BLOCK_BLOCK_H_
#define HEARTH_VMM_DEVICES_VIRTIO_BLOCK_BLOCK_H_

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "vmm/devices/virtio/block/request.h"
#include "vmm/devices/virtio/device_metrics.h"
#include "vmm/devices/virtio/virtio_device.h"
#include "vmm/rate_limiter/rate_limiter.h"

namespace hearth::virtio {

inline constexpr uint64_t kBlkFSegMax = 1ull << 2;
inline constexpr uint64_t kBlkFRo = 1ull << 5;
inline constexpr uint64_t kBlkFFlush = 1ull << 9;

// The size of a drive's backing file or block device, in 512-byte sectors.
absl::StatusOr<uint64_t> DriveSectors(int fd, const std::string& drive_id);

class Block : public VirtioDevice {
 public:
  static absl::StatusOr<std::shared_ptr<Block>> Create(std::string drive_id, UniqueFd file,
                                                       bool read_only,
                                                       std::unique_ptr<vmm::RateLimiter> limiter);
  ~Block() override;

  uint32_t device_type() const override { return kDeviceBlock; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kMaxQueueSize}; }
  std::string name() const override { return "block " + drive_id_; }
  void ReadConfig(uint64_t offset, absl::Span<uint8_t> data) override;
  uint32_t config_generation() const override { return generation_.load(); }

  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;
  void Reset() override;
  const ActivateContext* activated() const override { return active_ ? &*active_ : nullptr; }
  void SaveState(VirtioState* state) const override;
  absl::Status RestoreState(const VirtioState& state) override;

  // PATCH /drives: a new backing file (same read-only mode); the guest is
  // told its capacity changed. Event-loop thread.
  absl::Status UpdateBacking(UniqueFd file);
  void UpdateRateLimiter(const vmm::RateLimiterConfig& config);

  const std::string& drive_id() const { return drive_id_; }
  uint64_t capacity() const;
  const DeviceMetrics& metrics() const { return metrics_; }

 private:
  Block(std::string drive_id, UniqueFd file, uint64_t capacity, bool read_only,
        std::unique_ptr<vmm::RateLimiter> limiter);
  // A read or write taken off the ring, waiting for its batch's transfer.
  struct PendingIo {
    DescriptorChain chain;
    BlockRequest request;
    uint8_t status = kBlkSIoErr;
    uint32_t written = 0;
  };
  static constexpr size_t kMaxBatch = kMaxQueueSize;
  // How long the device keeps looking at an emptied ring before it goes
  // back to waiting for a notification.
  static constexpr absl::Duration kPollWindow = absl::Microseconds(50);

  void Process();
  // Executes `batch` in order, merging adjacent requests; sets each status.
  void ExecuteBatch(std::vector<PendingIo>* batch);
  // Spins up to kPollWindow for the driver to make more requests available.
  bool PollForMore(const Queue& queue) const;
  // Executes a parsed request; returns the status byte and sets *written to
  // the bytes of data put into the guest's buffers.
  uint8_t Execute(const DescriptorChain& chain, const BlockRequest& request, uint32_t* written);

  const std::string drive_id_;
  const bool read_only_;
  UniqueFd file_;
  std::unique_ptr<vmm::RateLimiter> limiter_;
  DeviceMetrics metrics_;
  std::optional<ActivateContext> active_;

  // Config space is read on vCPU threads.
  mutable absl::Mutex config_mutex_;
  uint64_t capacity_ ABSL_GUARDED_BY(config_mutex_);
  std::atomic<uint32_t> generation_{0};
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_BLOCK_BLOCK_H_
