#include "vmm/devices/virtio/rng/rng.h"

#include <sys/random.h>

#include <algorithm>

#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {

Rng::Rng(std::unique_ptr<vmm::RateLimiter> limiter) : limiter_(std::move(limiter)) {}

Rng::~Rng() { Reset(); }

uint64_t Rng::features() const {
  return kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx;
}

absl::Status Rng::Activate(ActivateContext context) {
  if (context.queues.empty() || !context.queues[0].has_value()) {
    return absl::FailedPreconditionError("rng: request queue not set up");
  }
  RETURN_IF_ERROR(limiter_->Watch(context.event_loop, [this] { Process(); }));
  active_ = std::move(context);
  metrics_.activations.Add();
  Process();
  return absl::OkStatus();
}

void Rng::Reset() {
  if (!active_.has_value()) return;
  limiter_->Unwatch(active_->event_loop);
  active_.reset();
}

void Rng::UpdateRateLimiter(const vmm::RateLimiterConfig& config) {
  limiter_->Update(config);
  if (!active_.has_value()) return;
  absl::Status watched = limiter_->Watch(active_->event_loop, [this] { Process(); });
  if (!watched.ok()) LOG(ERROR) << "rng: rate limiter timer: " << watched.message();
  Process();
}

void Rng::ProcessQueue(size_t) {
  metrics_.notifications.Add();
  Process();
}

void Rng::Process() {
  if (!active_.has_value()) return;
  Queue& queue = *active_->queues[0];
  bool used_any = false;
  while (std::optional<DescriptorChain> chain = NextChain(&*active_, 0, &metrics_, &used_any)) {
    uint64_t length = std::min(chain->writable_bytes, kMaxRequestBytes);
    if (!limiter_->ConsumeRequest(length)) {
      queue.Undo();
      metrics_.throttled.Add();
      break;
    }
    uint32_t written = 0;
    absl::StatusOr<std::vector<iovec>> iovecs = WritableIovecs(*active_->memory, *chain, 0, length);
    if (iovecs.ok()) {
      for (const iovec& v : *iovecs) {
        // getrandom() fills up to 32 MiB per call from the urandom pool and
        // does not block once the pool is initialised.
        ssize_t n = ::getrandom(v.iov_base, v.iov_len, 0);
        if (n < 0 || static_cast<size_t>(n) != v.iov_len) break;
        written += static_cast<uint32_t>(n);
      }
      MarkWritableDirty(active_->memory, *chain, written);
    }
    if (written == 0) {
      metrics_.errors.Add();
    } else {
      metrics_.requests.Add();
    }
    metrics_.read_bytes.Add(written);
    queue.AddUsed(chain->head, written);
    used_any = true;
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

}  // namespace hearth::virtio
