// virtio-rng (virtio 1.2 §5.4): one queue of device-writable buffers that the
// device fills with bytes from the host's getrandom(2). The smallest virtio
// device; copy it when adding one.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_RNG_RNG_H_
#define HEARTH_VMM_DEVICES_VIRTIO_RNG_RNG_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmm/devices/virtio/device_metrics.h"
#include "vmm/devices/virtio/virtio_device.h"
#include "vmm/rate_limiter/rate_limiter.h"

namespace hearth::virtio {

class Rng : public VirtioDevice {
 public:
  // At most this many bytes per request: a guest cannot make the device
  // stall the event loop with one huge buffer.
  static constexpr uint64_t kMaxRequestBytes = 64 * 1024;

  explicit Rng(std::unique_ptr<vmm::RateLimiter> limiter);
  ~Rng() override;

  uint32_t device_type() const override { return kDeviceRng; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kMaxQueueSize}; }
  std::string name() const override { return "rng"; }

  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;
  void Reset() override;
  const ActivateContext* activated() const override { return active_ ? &*active_ : nullptr; }

  void UpdateRateLimiter(const vmm::RateLimiterConfig& config);
  const DeviceMetrics& metrics() const { return metrics_; }

 private:
  void Process();

  std::unique_ptr<vmm::RateLimiter> limiter_;
  DeviceMetrics metrics_;
  std::optional<ActivateContext> active_;
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_RNG_RNG_H_
