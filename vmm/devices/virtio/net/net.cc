#include "vmm/devices/virtio/net/net.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {
namespace {

// Offloads the guest's receive side accepts -> what the tap may hand us.
unsigned TapOffloads(uint64_t acked) {
  unsigned flags = 0;
  if (acked & kNetFGuestCsum) {
    flags |= TUN_F_CSUM;
    if (acked & kNetFGuestTso4) flags |= TUN_F_TSO4;
    if (acked & kNetFGuestTso6) flags |= TUN_F_TSO6;
    if (acked & kNetFGuestUfo) flags |= TUN_F_UFO;
  }
  return flags;
}

}  // namespace

absl::StatusOr<std::shared_ptr<Net>> Net::Create(std::string iface_id, UniqueFd tap,
                                                 std::optional<std::array<uint8_t, 6>> mac,
                                                 uint16_t mtu,
                                                 std::unique_ptr<vmm::RateLimiter> rx_limiter,
                                                 std::unique_ptr<vmm::RateLimiter> tx_limiter) {
  return CreateInternal(std::move(iface_id), std::move(tap), mac, mtu, std::move(rx_limiter),
                        std::move(tx_limiter), true);
}

absl::StatusOr<std::shared_ptr<Net>> Net::CreateForTesting(
    std::string iface_id, UniqueFd backend, std::optional<std::array<uint8_t, 6>> mac, uint16_t mtu,
    std::unique_ptr<vmm::RateLimiter> rx_limiter, std::unique_ptr<vmm::RateLimiter> tx_limiter) {
  return CreateInternal(std::move(iface_id), std::move(backend), mac, mtu, std::move(rx_limiter),
                        std::move(tx_limiter), false);
}

absl::StatusOr<std::shared_ptr<Net>> Net::CreateInternal(
    std::string iface_id, UniqueFd tap, std::optional<std::array<uint8_t, 6>> mac, uint16_t mtu,
    std::unique_ptr<vmm::RateLimiter> rx_limiter, std::unique_ptr<vmm::RateLimiter> tx_limiter,
    bool is_tap) {
  int flags = ::fcntl(tap.get(), F_GETFL);
  if (flags < 0 || ::fcntl(tap.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoStatus(absl::StrCat("net ", iface_id, ": making the tap non-blocking"));
  }
  // The 12-byte virtio 1.x header (virtio_net_hdr_v1) rides in front of
  // every frame on the tap.
  int header_size = static_cast<int>(kVnetHeaderSize);
  if (is_tap && ::ioctl(tap.get(), TUNSETVNETHDRSZ, &header_size) < 0) {
    return ErrnoStatus(absl::StrCat("net ", iface_id,
                                    ": TUNSETVNETHDRSZ (is it a tap opened with IFF_VNET_HDR?)"));
  }
  return std::shared_ptr<Net>(new Net(std::move(iface_id), std::move(tap), mac, mtu,
                                      std::move(rx_limiter), std::move(tx_limiter), is_tap));
}

Net::Net(std::string iface_id, UniqueFd tap, std::optional<std::array<uint8_t, 6>> mac,
         uint16_t mtu, std::unique_ptr<vmm::RateLimiter> rx_limiter,
         std::unique_ptr<vmm::RateLimiter> tx_limiter, bool is_tap)
    : iface_id_(std::move(iface_id)),
      tap_(std::move(tap)),
      mac_(mac),
      mtu_(mtu),
      is_tap_(is_tap),
      rx_limiter_(std::move(rx_limiter)),
      tx_limiter_(std::move(tx_limiter)) {}

Net::~Net() { Reset(); }

uint64_t Net::features() const {
  return kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx | kNetFCsum | kNetFGuestCsum |
         kNetFGuestTso4 | kNetFGuestTso6 | kNetFGuestUfo | kNetFHostTso4 | kNetFHostTso6 |
         kNetFHostUfo | (mac_.has_value() ? kNetFMac : 0) | (mtu_ != 0 ? kNetFMtu : 0);
}

void Net::ReadConfig(uint64_t offset, absl::Span<uint8_t> data) {
  // struct virtio_net_config: mac[6] @0, status u16 @6,
  // max_virtqueue_pairs u16 @8, mtu u16 @10.
  uint8_t config[12] = {};
  if (mac_.has_value()) std::memcpy(config, mac_->data(), 6);
  uint16_t pairs = 1;
  std::memcpy(config + 8, &pairs, 2);
  std::memcpy(config + 10, &mtu_, 2);
  ReadConfigBytes(config, offset, data);
}

void Net::WatchTap(bool readable) {
  if (!active_.has_value() || readable == tap_watched_) return;
  if (readable) {
    tap_watched_ = active_->event_loop->Add(tap_.get(), [this](uint32_t) { ProcessRx(); }).ok();
  } else {
    active_->event_loop->Unwatch(tap_.get());
    tap_watched_ = false;
  }
}

absl::Status Net::WatchLimiters(EventLoop* loop) {
  RETURN_IF_ERROR(rx_limiter_->Watch(loop, [this] { ProcessRx(); }));
  return tx_limiter_->Watch(loop, [this] { ProcessTx(); });
}

absl::Status Net::Activate(ActivateContext context) {
  if (context.queues.size() < 2 || !context.queues[kRxQueue].has_value() ||
      !context.queues[kTxQueue].has_value()) {
    return absl::FailedPreconditionError("net: rx and tx queues must be set up");
  }
  unsigned offloads = TapOffloads(context.acked_features);
  if (is_tap_ && ::ioctl(tap_.get(), TUNSETOFFLOAD, offloads) < 0) {
    // Kernels without UFO on taps refuse it; the guest then simply never
    // receives UFO frames.
    if (::ioctl(tap_.get(), TUNSETOFFLOAD, offloads & ~TUN_F_UFO) < 0) {
      return ErrnoStatus(absl::StrCat(name(), ": TUNSETOFFLOAD 0x", absl::Hex(offloads)));
    }
  }
  active_ = std::move(context);
  absl::Status watched = WatchLimiters(active_->event_loop);
  if (!watched.ok()) {
    Reset();
    return watched;
  }
  metrics_.activations.Add();
  WatchTap(true);
  ProcessTx();
  ProcessRx();
  return absl::OkStatus();
}

void Net::Reset() {
  if (!active_.has_value()) return;
  WatchTap(false);
  rx_limiter_->Unwatch(active_->event_loop);
  tx_limiter_->Unwatch(active_->event_loop);
  pending_rx_.reset();
  active_.reset();
}

void Net::SaveState(VirtioState* state) const {
  NetState net;
  if (pending_rx_.has_value()) {
    net.pending_rx = NetState::PendingRx{pending_rx_->head, pending_rx_->length};
  }
  state->device = net;
}

absl::Status Net::RestoreState(const VirtioState& state) {
  pending_rx_.reset();
  const NetState saved = DeviceStateOr<NetState>(state);
  if (saved.pending_rx.has_value()) {
    // A descriptor of the rx queue as the driver sized it: the device
    // publishes it as a used id, which the guest trusts to be in range.
    const uint32_t rx_size = state.queues.size() > kRxQueue ? state.queues[kRxQueue].size : 0;
    if (saved.pending_rx->head >= std::min<uint32_t>(rx_size, kMaxQueueSize)) {
      return absl::InvalidArgumentError(absl::StrCat(name(), ": pending rx head out of range"));
    }
    pending_rx_ =
        PendingRx{static_cast<uint16_t>(saved.pending_rx->head), saved.pending_rx->length};
  }
  return absl::OkStatus();
}

void Net::UpdateRateLimiters(const std::optional<vmm::RateLimiterConfig>& rx,
                             const std::optional<vmm::RateLimiterConfig>& tx) {
  if (rx.has_value()) rx_limiter_->Update(*rx);
  if (tx.has_value()) tx_limiter_->Update(*tx);
  if (active_.has_value()) {
    absl::Status watched = WatchLimiters(active_->event_loop);
    if (!watched.ok()) LOG(ERROR) << name() << ": rate limiter timer: " << watched.message();
  }
  ProcessTx();
  ProcessRx();
}

void Net::ProcessQueue(size_t index) {
  metrics_.notifications.Add();
  if (index == kTxQueue) {
    ProcessTx();
  } else {
    ProcessRx();  // the guest posted rx buffers
  }
}

void Net::ProcessRx() {
  if (!active_.has_value()) return;
  Queue& queue = *active_->queues[kRxQueue];
  bool used_any = false;
  // A received frame goes to the guest (also one the rate limiter held).
  auto publish = [&](uint16_t head, uint32_t length) {
    queue.AddUsed(head, length);
    metrics_.rx_frames.Add();
    metrics_.requests.Add();
    metrics_.read_bytes.Add(length);
    used_any = true;
  };
  if (pending_rx_.has_value()) {
    if (!rx_limiter_->ConsumeRequest(pending_rx_->length)) {
      WatchTap(false);
      return;
    }
    publish(pending_rx_->head, pending_rx_->length);
    pending_rx_.reset();
  }
  bool keep_watching = true;
  while (true) {
    if (rx_limiter_->blocked()) {
      keep_watching = false;  // the limiter's timer brings us back
      break;
    }
    std::optional<DescriptorChain> popped = NextChain(&*active_, kRxQueue, &metrics_, &used_any);
    if (!popped.has_value()) {
      // No guest buffers (or a broken ring): leave frames in the tap until
      // the guest refills.
      metrics_.rx_no_buffers.Add();
      keep_watching = false;
      break;
    }
    const DescriptorChain& chain = *popped;
    if (chain.writable_bytes < kVnetHeaderSize) {
      metrics_.invalid_chains.Add();
      queue.AddUsed(chain.head, 0);
      used_any = true;
      continue;
    }
    absl::StatusOr<std::vector<iovec>> iovecs =
        WritableIovecs(*active_->memory, chain, 0, std::min(chain.writable_bytes, kMaxFrameBytes));
    if (!iovecs.ok()) {
      metrics_.invalid_chains.Add();
      queue.AddUsed(chain.head, 0);
      used_any = true;
      continue;
    }
    ssize_t n = RetryOnEintr(
        [&] { return ::readv(tap_.get(), iovecs->data(), static_cast<int>(iovecs->size())); });
    if (n <= 0) {
      queue.Undo();  // nothing to read (or the tap failed): keep the buffer
      if (n < 0 && errno != EAGAIN) {
        metrics_.errors.Add();
        LOG_EVERY_N(WARNING, 100) << name() << ": tap read: " << std::strerror(errno);
      }
      break;
    }
    uint32_t length = static_cast<uint32_t>(n);
    MarkWritableDirty(active_->memory, chain, length);
    if (!rx_limiter_->ConsumeRequest(length)) {
      pending_rx_ = PendingRx{chain.head, length};
      metrics_.throttled.Add();
      keep_watching = false;
      break;
    }
    publish(chain.head, length);
  }
  WatchTap(keep_watching);
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

void Net::ProcessTx() {
  if (!active_.has_value()) return;
  Queue& queue = *active_->queues[kTxQueue];
  bool used_any = false;
  while (!tx_limiter_->blocked()) {
    std::optional<DescriptorChain> popped = NextChain(&*active_, kTxQueue, &metrics_, &used_any);
    if (!popped.has_value()) break;
    const DescriptorChain& chain = *popped;
    if (chain.readable_bytes < kVnetHeaderSize || chain.readable_bytes > kMaxFrameBytes) {
      metrics_.invalid_chains.Add();
      queue.AddUsed(chain.head, 0);
      used_any = true;
      continue;
    }
    uint64_t frame = chain.readable_bytes - kVnetHeaderSize;
    if (!tx_limiter_->ConsumeRequest(frame)) {
      queue.Undo();
      metrics_.throttled.Add();
      break;
    }
    absl::StatusOr<std::vector<iovec>> iovecs =
        ReadableIovecs(*active_->memory, chain, 0, chain.readable_bytes);
    ssize_t n = -1;
    if (iovecs.ok()) {
      n = RetryOnEintr(
          [&] { return ::writev(tap_.get(), iovecs->data(), static_cast<int>(iovecs->size())); });
    }
    if (n < 0) {
      metrics_.tx_dropped.Add();  // tap full or down: the frame is lost
    } else {
      metrics_.tx_frames.Add();
      metrics_.requests.Add();
      metrics_.write_bytes.Add(frame);
    }
    queue.AddUsed(chain.head, 0);
    used_any = true;
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

}  // namespace hearth::virtio
