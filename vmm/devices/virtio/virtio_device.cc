#include "vmm/devices/virtio/virtio_device.h"

#include <algorithm>
#include <cstring>

namespace hearth::virtio {

void VirtioDevice::ReadConfig(uint64_t, absl::Span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void VirtioDevice::WriteConfig(uint64_t, absl::Span<const uint8_t>) {}

void ReadConfigBytes(absl::Span<const uint8_t> config, uint64_t offset,
                     absl::Span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= config.size()) return;
  size_t n = std::min<uint64_t>(data.size(), config.size() - offset);
  std::memcpy(data.data(), config.data() + offset, n);
}

}  // namespace hearth::virtio
