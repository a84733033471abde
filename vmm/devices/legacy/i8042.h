// The i8042 keyboard controller, reduced to what a microVM needs: the guest
// resets the machine by writing 0xFE (pulse reset line) to the command port,
// and the host can inject Ctrl-Alt-Del as keyboard scancodes so that a guest
// with an AT keyboard driver shuts down cleanly. Other controller commands
// answer as a controller with a working keyboard and no mouse would.
//
// Ports: 0x60 data (offset 0), 0x64 status/command (offset 4).
#ifndef HEARTH_VMM_DEVICES_LEGACY_I8042_H_
#define HEARTH_VMM_DEVICES_LEGACY_I8042_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "vmm/bus/bus.h"
#include "vmm/devices/interrupt.h"

namespace hearth::devices {

// The controller's snapshot state: its registers and the queued scancodes.
// (vmm/devices/legacy/persist.h converts it to the snapshot format.)
struct I8042State {
  uint8_t control = 0;
  uint8_t status = 0;
  uint8_t pending_command = 0;
  std::vector<uint8_t> buffer;

  bool operator==(const I8042State& other) const {
    return control == other.control && status == other.status &&
           pending_command == other.pending_command && buffer == other.buffer;
  }
};

class I8042 : public bus::BusDevice {
 public:
  static constexpr size_t kBufferSize = 16;

  // `on_reset` runs (on the vCPU thread) when the guest pulses the reset
  // line; it must only signal, never block.
  I8042(std::unique_ptr<Interrupt> keyboard_interrupt, std::function<void()> on_reset);

  void Read(uint64_t offset, absl::Span<uint8_t> data) override;
  void Write(uint64_t offset, absl::Span<const uint8_t> data) override;

  // Queues the make codes of Ctrl, Alt and Delete (scancode set 2) and
  // raises the keyboard interrupt. Fails if the output buffer is full.
  absl::Status TriggerCtrlAltDel();

  uint64_t resets_requested() const;

  // Snapshots: controller registers and queued scancodes.
  // Restore keeps the first kBufferSize queued bytes.
  I8042State SaveState() const;
  void RestoreState(const I8042State& state);

 private:
  void PushByte(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void HandleCommand(uint8_t command) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void HandleData(uint8_t data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::unique_ptr<Interrupt> interrupt_;
  const std::function<void()> on_reset_;

  mutable absl::Mutex mutex_;
  std::deque<uint8_t> buffer_ ABSL_GUARDED_BY(mutex_);
  uint8_t control_ ABSL_GUARDED_BY(mutex_);
  uint8_t status_ ABSL_GUARDED_BY(mutex_);
  // The command whose data byte the next write to port 0x60 carries.
  uint8_t pending_command_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t resets_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace hearth::devices

#endif  // HEARTH_VMM_DEVICES_LEGACY_I8042_H_
