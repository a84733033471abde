// The PIO and MMIO buses: ordered maps from address ranges to BusDevices.
// A vCPU exit for port I/O or MMIO is dispatched here with the address made
// relative to the device's base. The bus is filled before vCPUs start and
// never changes afterwards, so lookups need no lock; each device guards its
// own state.
#ifndef HEARTH_VMM_BUS_BUS_H_
#define HEARTH_VMM_BUS_BUS_H_

#include <cstdint>
#include <map>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace hearth::bus {

// A device on a bus. `data.size()` is the access width (1, 2, 4 or 8 bytes);
// reads fill `data`, writes consume it. Called from vCPU threads.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual void Read(uint64_t offset, absl::Span<uint8_t> data) = 0;
  virtual void Write(uint64_t offset, absl::Span<const uint8_t> data) = 0;
};

class Bus {
 public:
  // Maps [base, base + length) to `device`. Fails on an empty or wrapping
  // range, or one that overlaps a range already on the bus.
  absl::Status Insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length);

  // Dispatches an access; false if no single device covers all of it.
  bool Read(uint64_t address, absl::Span<uint8_t> data) const;
  bool Write(uint64_t address, absl::Span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  // The device whose range holds [address, address + size); sets *offset.
  BusDevice* Find(uint64_t address, uint64_t size, uint64_t* offset) const;

  std::map<uint64_t, Range> ranges_;  // keyed by base address
};

}  // namespace hearth::bus

#endif  // HEARTH_VMM_BUS_BUS_H_
