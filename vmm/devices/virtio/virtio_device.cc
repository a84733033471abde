#include "vmm/devices/virtio/virtio_device.h"

#include <algorithm>
#include <cstring>

#include "glog/logging.h"

namespace hearth::virtio {

void VirtioDevice::ReadConfig(uint64_t, absl::Span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void VirtioDevice::WriteConfig(uint64_t, absl::Span<const uint8_t>) {}

std::optional<DescriptorChain> NextChain(ActivateContext* context, size_t index,
                                         DeviceMetrics* metrics, bool* used) {
  Queue& queue = *context->queues[index];
  while (true) {
    const bool was_broken = queue.broken();
    Queue::PopResult popped = queue.Pop();
    if (popped.chain.has_value()) return std::move(popped.chain);
    if (!popped.error.has_value()) return std::nullopt;
    if (queue.broken()) {
      if (!was_broken) {
        metrics->broken_queues.Add();
        LOG(WARNING) << "virtio queue " << index << ": " << popped.error->reason;
        if (context->needs_reset) context->needs_reset();
      }
      return std::nullopt;
    }
    metrics->invalid_chains.Add();
    LOG_EVERY_N(WARNING, 100) << "virtio queue " << index
                              << ": bad chain: " << popped.error->reason;
    queue.AddUsed(popped.error->head, 0);
    *used = true;
  }
}

void SignalUsed(ActivateContext* context, Queue* queue, DeviceMetrics* metrics) {
  if (queue->NeedsInterrupt()) {
    metrics->interrupts.Add();
    context->interrupt->SignalUsedBuffer();
  }
}

void VirtioDevice::SaveState(VirtioState*) const {}

absl::Status VirtioDevice::RestoreState(const VirtioState&) { return absl::OkStatus(); }

void ReadConfigBytes(absl::Span<const uint8_t> config, uint64_t offset, absl::Span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= config.size()) return;
  size_t n = std::min<uint64_t>(data.size(), config.size() - offset);
  std::memcpy(data.data(), config.data() + offset, n);
}

}  // namespace hearth::virtio
