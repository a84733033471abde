// The standalone VMM's console: serial output copied to an fd (stdout), and
// the boot timer that notes when the first byte of guest output appears.
#ifndef HEARTH_VMM_CONSOLE_H_
#define HEARTH_VMM_CONSOLE_H_

#include <atomic>
#include <cstdint>
#include <cstdio>

#include "absl/time/clock.h"
#include "vmm/devices/legacy/serial.h"

namespace hearth::vmm {

// Milestones of one boot, in microseconds since the timer was created (at
// the top of main, as close to process start as Hearth can measure).
class BootTimer {
 public:
  BootTimer() : start_(absl::Now()) {}
  void MarkVmReady() { vm_ready_us_ = Since(); }
  void MarkFirstOutput() {
    int64_t expected = -1;
    first_output_us_.compare_exchange_strong(expected, Since());
  }
  void MarkExit() { exit_us_ = Since(); }
  void SetGuestResident(uint64_t bytes) { guest_resident_bytes_ = bytes; }
  int64_t first_output_us() const { return first_output_us_; }
  int64_t ElapsedUs() const { return Since(); }
  // One line: "hearth-vmm boot-timer: vm_ready_us=.. first_output_us=..
  // exit_us=.. guest_resident_kib=..".
  void Print(FILE* out) const;

 private:
  int64_t Since() const { return absl::ToInt64Microseconds(absl::Now() - start_); }
  absl::Time start_;
  std::atomic<int64_t> vm_ready_us_{-1};
  std::atomic<int64_t> first_output_us_{-1};
  std::atomic<int64_t> exit_us_{-1};
  std::atomic<uint64_t> guest_resident_bytes_{0};
};

// Writes guest output to `fd`, blocking if the reader is slow (standalone
// mode's stdout: losing output would be worse than slowing the guest).
class FdConsoleOutput : public devices::SerialOutput {
 public:
  FdConsoleOutput(int fd, BootTimer* timer) : fd_(fd), timer_(timer) {}
  void Write(absl::Span<const uint8_t> bytes) override;

 private:
  int fd_;
  BootTimer* timer_;
};

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_CONSOLE_H_
