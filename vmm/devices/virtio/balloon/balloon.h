// virtio-balloon (virtio 1.2 §5.5): the host asks the guest for memory back
// by raising num_pages; the guest hands page frames over on the inflate
// queue, and the device releases them (madvise MADV_DONTNEED: the host gets
// the memory back, a later guest access sees a zero page). Deflated frames
// need nothing: they fault back in when the guest touches them. With
// VIRTIO_BALLOON_F_STATS_VQ the device keeps the guest's statistics buffer
// and returns it every polling interval to get fresh numbers.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_BALLOON_BALLOON_H_
#define HEARTH_VMM_DEVICES_VIRTIO_BALLOON_BALLOON_H_

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/timer_fd.h"
#include "vmm/devices/virtio/device_metrics.h"
#include "vmm/devices/virtio/virtio_device.h"

namespace hearth::virtio {

inline constexpr uint64_t kBalloonFStatsVq = 1ull << 1;
inline constexpr uint64_t kBalloonFDeflateOnOom = 1ull << 2;
// The balloon always counts in 4 KiB pages, whatever the guest's page size.
inline constexpr uint64_t kBalloonPageSize = 4096;

struct BalloonMetrics : DeviceMetrics {
  Counter inflated_pages;
  Counter deflated_pages;
  Counter stats_updates;
  Counter bad_pfns;  // page frames outside guest RAM

  std::vector<std::pair<std::string, uint64_t>> Snapshot() const override {
    auto counters = DeviceMetrics::Snapshot();
    counters.insert(counters.end(), {{"inflated_pages", inflated_pages.Get()},
                                     {"deflated_pages", deflated_pages.Get()},
                                     {"stats_updates", stats_updates.Get()},
                                     {"bad_pfns", bad_pfns.Get()}});
    return counters;
  }
};

// The latest statistics the guest reported (tag -> value), plus the
// balloon's own target and actual sizes.
struct BalloonStatistics {
  uint32_t target_pages = 0;
  uint32_t actual_pages = 0;
  std::map<uint16_t, uint64_t> values;
};

class Balloon : public VirtioDevice {
 public:
  static constexpr size_t kInflateQueue = 0;
  static constexpr size_t kDeflateQueue = 1;
  static constexpr size_t kStatsQueue = 2;

  static absl::StatusOr<std::shared_ptr<Balloon>> Create(uint32_t amount_mib, bool deflate_on_oom,
                                                         uint32_t stats_polling_interval_s);
  ~Balloon() override;

  uint32_t device_type() const override { return kDeviceBalloon; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override {
    return {kMaxQueueSize, kMaxQueueSize, kMaxQueueSize};
  }
  std::string name() const override { return "balloon"; }
  void ReadConfig(uint64_t offset, absl::Span<uint8_t> data) override;
  void WriteConfig(uint64_t offset, absl::Span<const uint8_t> data) override;
  uint32_t config_generation() const override { return generation_.load(); }

  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;
  void Reset() override;
  const ActivateContext* activated() const override { return active_ ? &*active_ : nullptr; }
  void SaveState(VirtioState* state) const override;
  absl::Status RestoreState(const VirtioState& state) override;
  void Restored() override;

  // PATCH /balloon: a new target; the guest is told with a config-change
  // interrupt. Event-loop thread.
  void SetTarget(uint32_t amount_mib);
  // PATCH /balloon/statistics. 0 disables polling.
  absl::Status SetStatsInterval(uint32_t seconds);
  BalloonStatistics statistics() const;
  const BalloonMetrics& metrics() const { return metrics_; }

 private:
  Balloon(uint32_t amount_mib, bool deflate_on_oom, uint32_t interval_s, TimerFd timer);
  void ProcessPfns(size_t index);
  // Inflate: madvise `pages` pages at `host` away; deflate: count them.
  void ReleasePages(size_t index, uint8_t* host, uint64_t pages);
  void ProcessStats();
  void OnStatsTimer();
  // The next poll, stats_interval_s_ (> 0) from now.
  void ArmStatsTimer();

  const bool deflate_on_oom_;
  uint32_t stats_interval_s_;
  TimerFd stats_timer_;
  BalloonMetrics metrics_;
  std::optional<ActivateContext> active_;
  // The stats buffer the guest handed over, kept until the next poll.
  std::optional<uint16_t> stats_head_;

  mutable absl::Mutex mutex_;  // config space, read/written on vCPU threads
  uint32_t num_pages_ ABSL_GUARDED_BY(mutex_);
  uint32_t actual_ ABSL_GUARDED_BY(mutex_) = 0;
  std::map<uint16_t, uint64_t> stats_ ABSL_GUARDED_BY(mutex_);
  std::atomic<uint32_t> generation_{0};
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_BALLOON_BALLOON_H_
