#include "vmm/devices/virtio/balloon/balloon.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {
namespace {

constexpr uint32_t kPagesPerMib = 1024 * 1024 / kBalloonPageSize;
// One statistics entry: u16 tag, u64 value, packed.
constexpr size_t kStatEntrySize = 10;
constexpr size_t kMaxStatEntries = 32;

}  // namespace

absl::StatusOr<std::shared_ptr<Balloon>> Balloon::Create(uint32_t amount_mib, bool deflate_on_oom,
                                                         uint32_t stats_polling_interval_s) {
  ASSIGN_OR_RETURN(TimerFd timer, TimerFd::Create());
  return std::shared_ptr<Balloon>(
      new Balloon(amount_mib, deflate_on_oom, stats_polling_interval_s, std::move(timer)));
}

Balloon::Balloon(uint32_t amount_mib, bool deflate_on_oom, uint32_t interval_s, TimerFd timer)
    : deflate_on_oom_(deflate_on_oom),
      stats_interval_s_(interval_s),
      stats_timer_(std::move(timer)),
      num_pages_(amount_mib * kPagesPerMib) {}

Balloon::~Balloon() { Reset(); }

uint64_t Balloon::features() const {
  return kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx |
         (stats_interval_s_ > 0 ? kBalloonFStatsVq : 0) |
         (deflate_on_oom_ ? kBalloonFDeflateOnOom : 0);
}

void Balloon::ReadConfig(uint64_t offset, absl::Span<uint8_t> data) {
  // struct virtio_balloon_config: num_pages u32 @0, actual u32 @4.
  uint8_t config[8];
  {
    absl::MutexLock lock(&mutex_);
    std::memcpy(config, &num_pages_, 4);
    std::memcpy(config + 4, &actual_, 4);
  }
  ReadConfigBytes(config, offset, data);
}

void Balloon::WriteConfig(uint64_t offset, absl::Span<const uint8_t> data) {
  // Only `actual` is the driver's to write, and only as a whole.
  if (offset != 4 || data.size() != 4) return;
  absl::MutexLock lock(&mutex_);
  std::memcpy(&actual_, data.data(), 4);
}

absl::Status Balloon::Activate(ActivateContext context) {
  if (context.queues.size() < 2 || !context.queues[kInflateQueue].has_value() ||
      !context.queues[kDeflateQueue].has_value()) {
    return absl::FailedPreconditionError("balloon: inflate and deflate queues must be set up");
  }
  active_ = std::move(context);
  metrics_.activations.Add();
  if (active_->queues.size() > kStatsQueue && active_->queues[kStatsQueue].has_value()) {
    RETURN_IF_ERROR(active_->event_loop->Add(stats_timer_.fd(), [this](uint32_t) {
      // Drained for its readiness only: missed expirations do not matter.
      (void)stats_timer_.Read();
      OnStatsTimer();
    }));
  }
  ProcessPfns(kInflateQueue);
  ProcessPfns(kDeflateQueue);
  ProcessStats();
  return absl::OkStatus();
}

void Balloon::Reset() {
  if (!active_.has_value()) return;
  active_->event_loop->Unwatch(stats_timer_.fd());
  // Cannot fail: timerfd_settime refuses only a bad fd or a bad time.
  (void)stats_timer_.Disarm();
  stats_head_.reset();
  active_.reset();
  absl::MutexLock lock(&mutex_);
  actual_ = 0;
}

void Balloon::ProcessQueue(size_t index) {
  metrics_.notifications.Add();
  if (index == kStatsQueue) {
    ProcessStats();
  } else if (index == kInflateQueue || index == kDeflateQueue) {
    ProcessPfns(index);
  }
}

void Balloon::ProcessPfns(size_t index) {
  Queue& queue = *active_->queues[index];
  bool used_any = false;
  while (std::optional<DescriptorChain> popped =
             NextChain(&*active_, index, &metrics_, &used_any)) {
    const DescriptorChain& chain = *popped;
    // An array of u32 page frame numbers; a queue's worth at most.
    const uint64_t count = std::min<uint64_t>(chain.readable_bytes / 4, 4096);
    std::vector<uint32_t> pfns(count);
    if (!ReadFromChain(*active_->memory, chain, 0,
                       absl::MakeSpan(reinterpret_cast<uint8_t*>(pfns.data()), count * 4))
             .ok()) {
      metrics_.invalid_chains.Add();
      queue.AddUsed(chain.head, 0);
      used_any = true;
      continue;
    }
    // Runs of consecutive frames take one madvise each (drivers hand over
    // neighbouring pages); a run that is not all in one RAM region is
    // taken page by page, so each bad frame is counted.
    std::sort(pfns.begin(), pfns.end());
    for (size_t first = 0; first < pfns.size();) {
      size_t end = first + 1;
      while (end < pfns.size() && pfns[end] == pfns[end - 1] + 1) ++end;
      const uint64_t pages = end - first;
      absl::StatusOr<uint8_t*> run = active_->memory->HostAddress(
          uint64_t{pfns[first]} * kBalloonPageSize, pages * kBalloonPageSize);
      if (run.ok()) {
        ReleasePages(index, *run, pages);
      } else {
        for (size_t i = first; i < end; ++i) {
          absl::StatusOr<uint8_t*> host =
              active_->memory->HostAddress(uint64_t{pfns[i]} * kBalloonPageSize, kBalloonPageSize);
          if (host.ok()) {
            ReleasePages(index, *host, 1);
          } else {
            metrics_.bad_pfns.Add();
          }
        }
      }
      first = end;
    }
    metrics_.requests.Add();
    queue.AddUsed(chain.head, 0);
    used_any = true;
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

void Balloon::ReleasePages(size_t index, uint8_t* host, uint64_t pages) {
  if (index == kDeflateQueue) {
    metrics_.deflated_pages.Add(pages);
    return;
  }
  // Give the pages back to the host; the guest promised not to touch them
  // until it deflates.
  if (::madvise(host, pages * kBalloonPageSize, MADV_DONTNEED) == 0) {
    metrics_.inflated_pages.Add(pages);
  } else {
    metrics_.errors.Add(pages);
  }
}

void Balloon::ProcessStats() {
  if (!active_.has_value() || active_->queues.size() <= kStatsQueue ||
      !active_->queues[kStatsQueue].has_value()) {
    return;
  }
  Queue& queue = *active_->queues[kStatsQueue];
  bool used_any = false;
  while (std::optional<DescriptorChain> popped =
             NextChain(&*active_, kStatsQueue, &metrics_, &used_any)) {
    const DescriptorChain& chain = *popped;
    const size_t entries = std::min<size_t>(chain.readable_bytes / kStatEntrySize, kMaxStatEntries);
    std::vector<uint8_t> raw(entries * kStatEntrySize);
    if (ReadFromChain(*active_->memory, chain, 0, absl::MakeSpan(raw)).ok()) {
      absl::MutexLock lock(&mutex_);
      for (size_t i = 0; i < entries; ++i) {
        uint16_t tag;
        uint64_t value;
        std::memcpy(&tag, &raw[i * kStatEntrySize], 2);
        std::memcpy(&value, &raw[i * kStatEntrySize + 2], 8);
        stats_[tag] = value;
      }
      metrics_.stats_updates.Add();
    }
    // Keep the buffer: returning it is how the device asks for fresh stats.
    if (stats_head_.has_value()) {
      // A second buffer while holding one: give the old one back.
      queue.AddUsed(*stats_head_, 0);
      used_any = true;
    }
    stats_head_ = chain.head;
    if (stats_interval_s_ > 0) {
      ArmStatsTimer();
    }
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

void Balloon::SaveState(VirtioState* state) const {
  BalloonState balloon;
  {
    absl::MutexLock lock(&mutex_);
    balloon.num_pages = num_pages_;
    balloon.actual = actual_;
    balloon.stats = stats_;
  }
  balloon.stats_polling_interval_s = stats_interval_s_;
  if (stats_head_.has_value()) balloon.stats_head = *stats_head_;
  state->device = std::move(balloon);
}

absl::Status Balloon::RestoreState(const VirtioState& state) {
  const BalloonState balloon = DeviceStateOr<BalloonState>(state);
  if ((stats_interval_s_ == 0) != (balloon.stats_polling_interval_s == 0)) {
    return absl::InvalidArgumentError(
        "balloon: statistics are on in the snapshot and off here, or the reverse");
  }
  // A descriptor of the stats queue as the driver sized it: the device
  // gives it back as a used id, which the guest trusts to be in range.
  const uint32_t stats_size =
      state.queues.size() > kStatsQueue ? state.queues[kStatsQueue].size : 0;
  if (balloon.stats_head.has_value() &&
      *balloon.stats_head >= std::min<uint32_t>(stats_size, kMaxQueueSize)) {
    return absl::InvalidArgumentError("balloon: statistics buffer index out of range");
  }
  {
    absl::MutexLock lock(&mutex_);
    num_pages_ = balloon.num_pages;
    actual_ = balloon.actual;
    stats_ = balloon.stats;
  }
  stats_interval_s_ = balloon.stats_polling_interval_s;
  stats_head_.reset();
  if (balloon.stats_head.has_value()) stats_head_ = static_cast<uint16_t>(*balloon.stats_head);
  return absl::OkStatus();
}

void Balloon::Restored() {
  // The held statistics buffer is returned at the next poll, as before.
  if (stats_head_.has_value() && stats_interval_s_ > 0) {
    ArmStatsTimer();
  }
}

void Balloon::ArmStatsTimer() {
  // Cannot fail: timerfd_settime refuses only a bad fd or a bad time, and
  // the interval is a positive number of seconds.
  (void)stats_timer_.Arm(absl::Seconds(stats_interval_s_));
}

void Balloon::OnStatsTimer() {
  if (!active_.has_value() || !stats_head_.has_value()) return;
  Queue& queue = *active_->queues[kStatsQueue];
  queue.AddUsed(*stats_head_, 0);
  stats_head_.reset();
  SignalUsed(&*active_, &queue, &metrics_);
}

void Balloon::SetTarget(uint32_t amount_mib) {
  {
    absl::MutexLock lock(&mutex_);
    num_pages_ = amount_mib * kPagesPerMib;
  }
  generation_.fetch_add(1);
  if (active_.has_value()) active_->interrupt->SignalConfigChange();
}

absl::Status Balloon::SetStatsInterval(uint32_t seconds) {
  if ((stats_interval_s_ == 0) != (seconds == 0)) {
    return absl::FailedPreconditionError(
        "balloon statistics can only be re-timed, not switched on or off, "
        "after boot (the feature was negotiated at boot)");
  }
  stats_interval_s_ = seconds;
  if (stats_head_.has_value() && seconds > 0) {
    ArmStatsTimer();
  }
  return absl::OkStatus();
}

BalloonStatistics Balloon::statistics() const {
  absl::MutexLock lock(&mutex_);
  return BalloonStatistics{num_pages_, actual_, stats_};
}

}  // namespace hearth::virtio
