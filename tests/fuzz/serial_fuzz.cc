// The 8250/16550A UART's register interface (vmm/devices/legacy/serial.h)
// under any sequence of guest port accesses and host console input.
// Checks: LSR's data-ready bit tracks the receive FIFO, the FIFO never
// holds more than 64 bytes, and every byte counted as transmitted reached
// the output.
//
// Input: operations, each an opcode u8:
//   0 write: offset u8 (0..9), value u8     1 read: offset u8 (0..9)
//   2 console input: length u8, bytes       3 access of width 2, 4 or 8
#include <memory>
#include <string>

#include "tests/fuzz/fuzz_support.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/legacy/serial.h"

namespace {

class CountingOutput : public hearth::devices::SerialOutput {
 public:
  void Write(absl::Span<const uint8_t> bytes) override { count += bytes.size(); }
  uint64_t count = 0;
};

constexpr uint64_t kLsr = 5;
constexpr uint8_t kLsrDataReady = 0x01;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hearth::devices::Serial;
  hearth::fuzz::FuzzInput input(data, size);
  auto output = std::make_shared<CountingOutput>();
  Serial serial(std::make_unique<hearth::devices::CountingInterrupt>(), output);
  for (int i = 0; i < 1024 && !input.empty(); ++i) {
    switch (input.Get<uint8_t>() % 4) {
      case 0: {
        uint64_t offset = input.Get<uint8_t>() % 10;
        uint8_t value = input.Get<uint8_t>();
        serial.Write(offset, absl::MakeConstSpan(&value, 1));
        break;
      }
      case 1: {
        uint8_t value;
        serial.Read(input.Get<uint8_t>() % 10, absl::MakeSpan(&value, 1));
        break;
      }
      case 2: {
        const size_t space = serial.InputSpace();
        std::string bytes = input.Bytes(input.Get<uint8_t>());
        size_t accepted = serial.EnqueueInput(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
        FUZZ_CHECK(accepted <= bytes.size() && accepted <= space);
        FUZZ_CHECK(serial.InputSpace() == space - accepted);
        break;
      }
      case 3: {
        uint8_t wide[8] = {0};
        size_t width = size_t{2} << (input.Get<uint8_t>() % 3);
        uint64_t offset = input.Get<uint8_t>() % 10;
        if (input.Bool()) {
          serial.Read(offset, absl::MakeSpan(wide, width));
          for (size_t b = 0; b < width; ++b) FUZZ_CHECK(wide[b] == 0xff);
        } else {
          const size_t space = serial.InputSpace();
          serial.Write(offset, absl::MakeConstSpan(wide, width));
          FUZZ_CHECK(serial.InputSpace() == space);  // ignored
        }
        break;
      }
    }
    FUZZ_CHECK(serial.InputSpace() <= Serial::kFifoSize);
    uint8_t lsr;
    serial.Read(kLsr, absl::MakeSpan(&lsr, 1));
    FUZZ_CHECK(((lsr & kLsrDataReady) != 0) == (serial.InputSpace() < Serial::kFifoSize));
    FUZZ_CHECK(serial.bytes_written() == output->count);
  }
  return 0;
}
