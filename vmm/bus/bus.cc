#include "vmm/bus/bus.h"

#include "absl/strings/str_cat.h"

namespace hearth::bus {

absl::Status Bus::Insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length) {
  if (length == 0 || base + length < base) {
    return absl::InvalidArgumentError(
        absl::StrCat("bus range at 0x", absl::Hex(base), " is empty or wraps around"));
  }
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + length) {
    return absl::AlreadyExistsError(
        absl::StrCat("bus range [0x", absl::Hex(base), ", 0x", absl::Hex(base + length),
                     ") overlaps the device at 0x", absl::Hex(next->first)));
  }
  if (next != ranges_.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second.length > base) {
      return absl::AlreadyExistsError(
          absl::StrCat("bus range [0x", absl::Hex(base), ", 0x", absl::Hex(base + length),
                       ") overlaps the device at 0x", absl::Hex(previous->first)));
    }
  }
  ranges_.emplace(base, Range{length, std::move(device)});
  return absl::OkStatus();
}

BusDevice* Bus::Find(uint64_t address, uint64_t size, uint64_t* offset) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t relative = address - it->first;
  if (relative >= it->second.length || size > it->second.length - relative) {
    return nullptr;
  }
  *offset = relative;
  return it->second.device.get();
}

bool Bus::Read(uint64_t address, absl::Span<uint8_t> data) const {
  uint64_t offset = 0;
  BusDevice* device = Find(address, data.size(), &offset);
  if (device == nullptr) return false;
  device->Read(offset, data);
  return true;
}

bool Bus::Write(uint64_t address, absl::Span<const uint8_t> data) const {
  uint64_t offset = 0;
  BusDevice* device = Find(address, data.size(), &offset);
  if (device == nullptr) return false;
  device->Write(offset, data);
  return true;
}

}  // namespace hearth::bus
