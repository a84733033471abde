// The i8042 controller's register interface (vmm/devices/legacy/i8042.h)
// under any sequence of guest port accesses and host Ctrl-Alt-Del requests.
// Checks: every reset the device counts reached the VMM's callback, and the
// output-buffer-full status bit is clear only when there is nothing to read.
//
// Input: operations, each an opcode u8:
//   0 write: offset u8 (0..7), value u8     1 read: offset u8 (0..7)
//   2 Ctrl-Alt-Del                          3 access of width 2, 4 or 8
#include <memory>

#include "tests/fuzz/fuzz_support.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/legacy/i8042.h"

namespace {
constexpr uint64_t kData = 0;
constexpr uint64_t kStatus = 4;
constexpr uint8_t kStatusOutputFull = 0x01;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hearth::devices::I8042;
  hearth::fuzz::FuzzInput input(data, size);
  uint64_t resets = 0;
  I8042 i8042(std::make_unique<hearth::devices::CountingInterrupt>(), [&resets] { ++resets; });
  auto read = [&i8042](uint64_t offset) {
    uint8_t value = 0;
    i8042.Read(offset, absl::MakeSpan(&value, 1));
    return value;
  };
  for (int i = 0; i < 1024 && !input.empty(); ++i) {
    switch (input.Get<uint8_t>() % 4) {
      case 0: {
        uint64_t offset = input.Get<uint8_t>() % 8;
        uint8_t value = input.Get<uint8_t>();
        i8042.Write(offset, absl::MakeConstSpan(&value, 1));
        break;
      }
      case 1:
        read(input.Get<uint8_t>() % 8);
        break;
      case 2:
        (void)i8042.TriggerCtrlAltDel();
        break;
      case 3: {
        uint8_t wide[8] = {0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe};
        size_t width = size_t{2} << (input.Get<uint8_t>() % 3);
        if (input.Bool()) {
          i8042.Read(input.Get<uint8_t>() % 8, absl::MakeSpan(wide, width));
        } else {
          i8042.Write(kStatus, absl::MakeConstSpan(wide, width));  // no reset
        }
        break;
      }
    }
    FUZZ_CHECK(i8042.resets_requested() == resets);
    if (!(read(kStatus) & kStatusOutputFull)) {
      FUZZ_CHECK(read(kData) == 0);
      FUZZ_CHECK(!(read(kStatus) & kStatusOutputFull));
    }
  }
  return 0;
}
