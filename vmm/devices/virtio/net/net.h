// virtio-net (virtio 1.2 §5.1) over a tap device (IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR, vnet header size 12 = struct virtio_net_hdr_v1). One rx and
// one tx queue; frames move straight between the tap and guest buffers
// (readv / writev), so nothing is buffered in the VMM beyond one rx frame
// held back by the rate limiter. When the guest has no rx buffers the tap is
// not read (the kernel queues or drops), and reading resumes when the guest
// refills the queue.
//
// Offloads: the device offers checksum and TSO/UFO in both directions; what
// the guest accepts for its receive side is passed to the tap with
// TUNSETOFFLOAD. No mergeable rx buffers: with TSO the guest posts 64 KiB
// buffers (Linux's "big packets" mode).
#ifndef HEARTH_VMM_DEVICES_VIRTIO_NET_NET_H_
#define HEARTH_VMM_DEVICES_VIRTIO_NET_NET_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "vmm/devices/virtio/device_metrics.h"
#include "vmm/devices/virtio/virtio_device.h"
#include "vmm/rate_limiter/rate_limiter.h"

namespace hearth::virtio {

inline constexpr uint64_t kNetFCsum = 1ull << 0;
inline constexpr uint64_t kNetFGuestCsum = 1ull << 1;
inline constexpr uint64_t kNetFMtu = 1ull << 3;
inline constexpr uint64_t kNetFMac = 1ull << 5;
inline constexpr uint64_t kNetFGuestTso4 = 1ull << 7;
inline constexpr uint64_t kNetFGuestTso6 = 1ull << 8;
inline constexpr uint64_t kNetFGuestUfo = 1ull << 10;
inline constexpr uint64_t kNetFHostTso4 = 1ull << 11;
inline constexpr uint64_t kNetFHostTso6 = 1ull << 12;
inline constexpr uint64_t kNetFHostUfo = 1ull << 14;

inline constexpr size_t kVnetHeaderSize = 12;
// Largest frame a chain may carry: 64 KiB of GSO payload plus headers.
inline constexpr uint64_t kMaxFrameBytes = 65562;

struct NetMetrics : DeviceMetrics {
  Counter rx_frames;
  Counter tx_frames;
  Counter tx_dropped;     // tap refused the frame
  Counter rx_no_buffers;  // times rx stalled waiting for guest buffers

  std::vector<std::pair<std::string, uint64_t>> Snapshot() const override {
    auto counters = DeviceMetrics::Snapshot();
    counters.insert(counters.end(), {{"rx_frames", rx_frames.Get()},
                                     {"tx_frames", tx_frames.Get()},
                                     {"tx_dropped", tx_dropped.Get()},
                                     {"rx_no_buffers", rx_no_buffers.Get()}});
    return counters;
  }
};

class Net : public VirtioDevice {
 public:
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;

  // `tap`: an open tap fd (made non-blocking here).
  static absl::StatusOr<std::shared_ptr<Net>> Create(std::string iface_id, UniqueFd tap,
                                                     std::optional<std::array<uint8_t, 6>> mac,
                                                     uint16_t mtu,
                                                     std::unique_ptr<vmm::RateLimiter> rx_limiter,
                                                     std::unique_ptr<vmm::RateLimiter> tx_limiter);
  // For unit tests only: `backend` is any non-blocking-capable datagram fd
  // standing in for the tap (one end of a SOCK_SEQPACKET socketpair, each
  // datagram a 12-byte vnet header + frame), and the tap ioctls
  // (TUNSETVNETHDRSZ, TUNSETOFFLOAD), which need a real tap, are skipped.
  static absl::StatusOr<std::shared_ptr<Net>> CreateForTesting(
      std::string iface_id, UniqueFd backend, std::optional<std::array<uint8_t, 6>> mac,
      uint16_t mtu, std::unique_ptr<vmm::RateLimiter> rx_limiter,
      std::unique_ptr<vmm::RateLimiter> tx_limiter);
  ~Net() override;

  uint32_t device_type() const override { return kDeviceNet; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kMaxQueueSize, kMaxQueueSize}; }
  std::string name() const override { return "net " + iface_id_; }
  void ReadConfig(uint64_t offset, absl::Span<uint8_t> data) override;

  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;
  void Reset() override;
  const ActivateContext* activated() const override { return active_ ? &*active_ : nullptr; }
  void SaveState(VirtioState* state) const override;
  absl::Status RestoreState(const VirtioState& state) override;

  // New limiters for the given directions (PATCH /network-interfaces).
  void UpdateRateLimiters(const std::optional<vmm::RateLimiterConfig>& rx,
                          const std::optional<vmm::RateLimiterConfig>& tx);
  const NetMetrics& metrics() const { return metrics_; }
  const std::string& iface_id() const { return iface_id_; }

 private:
  static absl::StatusOr<std::shared_ptr<Net>> CreateInternal(
      std::string iface_id, UniqueFd tap, std::optional<std::array<uint8_t, 6>> mac, uint16_t mtu,
      std::unique_ptr<vmm::RateLimiter> rx_limiter, std::unique_ptr<vmm::RateLimiter> tx_limiter,
      bool is_tap);
  Net(std::string iface_id, UniqueFd tap, std::optional<std::array<uint8_t, 6>> mac, uint16_t mtu,
      std::unique_ptr<vmm::RateLimiter> rx_limiter, std::unique_ptr<vmm::RateLimiter> tx_limiter,
      bool is_tap);
  void ProcessRx();
  void ProcessTx();
  // Watch the tap for input (true) or stop (no guest buffers).
  void WatchTap(bool readable);
  // Serves both limiters' timers on `loop` (those that limit).
  absl::Status WatchLimiters(EventLoop* loop);

  const std::string iface_id_;
  UniqueFd tap_;
  const std::optional<std::array<uint8_t, 6>> mac_;
  const uint16_t mtu_;
  // False only for CreateForTesting: no tap ioctls.
  const bool is_tap_;
  std::unique_ptr<vmm::RateLimiter> rx_limiter_;
  std::unique_ptr<vmm::RateLimiter> tx_limiter_;
  NetMetrics metrics_;
  std::optional<ActivateContext> active_;
  bool tap_watched_ = false;
  // An rx frame already in guest memory whose publication the rate limiter
  // deferred.
  struct PendingRx {
    uint16_t head;
    uint32_t length;
  };
  std::optional<PendingRx> pending_rx_;
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_NET_NET_H_
