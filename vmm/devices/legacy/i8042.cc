#include "vmm/devices/legacy/i8042.h"

#include <algorithm>
#include <vector>

namespace hearth::devices {
namespace {

constexpr uint64_t kDataOffset = 0;     // port 0x60
constexpr uint64_t kCommandOffset = 4;  // port 0x64

// Status register.
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;  // self-test passed
constexpr uint8_t kStatusLastWasCommand = 0x08;
constexpr uint8_t kStatusKeyboardUnlocked = 0x10;

// Controller configuration byte.
constexpr uint8_t kControlKeyboardInterrupt = 0x01;
constexpr uint8_t kControlSystemFlag = 0x04;

// Controller commands (port 0x64).
constexpr uint8_t kCmdReadControl = 0x20;
constexpr uint8_t kCmdWriteControl = 0x60;
constexpr uint8_t kCmdDisableAux = 0xa7;
constexpr uint8_t kCmdEnableAux = 0xa8;
constexpr uint8_t kCmdTestAux = 0xa9;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdTestKeyboard = 0xab;
constexpr uint8_t kCmdDisableKeyboard = 0xad;
constexpr uint8_t kCmdEnableKeyboard = 0xae;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
constexpr uint8_t kCmdWriteAux = 0xd4;
constexpr uint8_t kCmdPulseReset = 0xfe;

constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kKeyboardAck = 0xfa;
constexpr uint8_t kAuxAbsent = 0xff;

}  // namespace

I8042::I8042(std::unique_ptr<Interrupt> keyboard_interrupt, std::function<void()> on_reset)
    : interrupt_(std::move(keyboard_interrupt)),
      on_reset_(std::move(on_reset)),
      control_(kControlKeyboardInterrupt | kControlSystemFlag),
      status_(kStatusSystemFlag | kStatusKeyboardUnlocked) {}

void I8042::PushByte(uint8_t byte) {
  if (buffer_.size() >= kBufferSize) return;
  buffer_.push_back(byte);
  status_ |= kStatusOutputFull;
}

void I8042::Read(uint64_t offset, absl::Span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (data.size() != 1) return;
  absl::MutexLock lock(&mutex_);
  if (offset == kCommandOffset) {
    data[0] = status_;
  } else if (offset == kDataOffset) {
    data[0] = buffer_.empty() ? 0 : buffer_.front();
    if (!buffer_.empty()) buffer_.pop_front();
    if (buffer_.empty()) {
      status_ &= ~kStatusOutputFull;
    } else if (control_ & kControlKeyboardInterrupt) {
      interrupt_->Trigger();  // more scancodes waiting
    }
  }
}

void I8042::Write(uint64_t offset, absl::Span<const uint8_t> data) {
  if (data.size() != 1) return;
  bool reset = false;
  {
    absl::MutexLock lock(&mutex_);
    if (offset == kCommandOffset) {
      status_ |= kStatusLastWasCommand;
      if (data[0] == kCmdPulseReset) {
        ++resets_;
        reset = true;
      } else {
        HandleCommand(data[0]);
      }
    } else if (offset == kDataOffset) {
      status_ &= ~kStatusLastWasCommand;
      HandleData(data[0]);
    }
  }
  if (reset) on_reset_();
}

void I8042::HandleCommand(uint8_t command) {
  switch (command) {
    case kCmdReadControl:
      PushByte(control_);
      break;
    case kCmdWriteControl:
    case kCmdWriteOutputPort:
    case kCmdWriteAux:
      pending_command_ = command;
      break;
    case kCmdSelfTest:
      PushByte(kSelfTestPassed);
      break;
    case kCmdTestKeyboard:
      PushByte(0x00);  // interface OK
      break;
    case kCmdTestAux:
      PushByte(kAuxAbsent);
      break;
    case kCmdReadOutputPort:
      PushByte(0x01);  // reset line not asserted
      break;
    case kCmdDisableAux:
    case kCmdEnableAux:
    case kCmdDisableKeyboard:
    case kCmdEnableKeyboard:
    default:
      break;
  }
}

void I8042::HandleData(uint8_t data) {
  uint8_t command = pending_command_;
  pending_command_ = 0;
  switch (command) {
    case kCmdWriteControl:
      control_ = data;
      return;
    case kCmdWriteOutputPort:
      return;
    case kCmdWriteAux:
      PushByte(kAuxAbsent);  // no mouse behind the aux port
      return;
    default:
      // A command for the keyboard itself (reset, set LEDs, enable...):
      // acknowledge it as an AT keyboard does.
      PushByte(kKeyboardAck);
      return;
  }
}

absl::Status I8042::TriggerCtrlAltDel() {
  // Scancode set 2 make codes: Ctrl 0x14, Alt 0x11, Delete 0xe0 0x71.
  static constexpr uint8_t kSequence[] = {0x14, 0x11, 0xe0, 0x71};
  absl::MutexLock lock(&mutex_);
  if (buffer_.size() + sizeof(kSequence) > kBufferSize) {
    return absl::ResourceExhaustedError(
        "i8042 output buffer is full; the guest is not reading its keyboard");
  }
  for (uint8_t byte : kSequence) PushByte(byte);
  if (control_ & kControlKeyboardInterrupt) interrupt_->Trigger();
  return absl::OkStatus();
}

uint64_t I8042::resets_requested() const {
  absl::MutexLock lock(&mutex_);
  return resets_;
}

I8042State I8042::SaveState() const {
  absl::MutexLock lock(&mutex_);
  I8042State state;
  state.control = control_;
  state.status = status_;
  state.pending_command = pending_command_;
  state.buffer.assign(buffer_.begin(), buffer_.end());
  return state;
}

void I8042::RestoreState(const I8042State& state) {
  absl::MutexLock lock(&mutex_);
  control_ = state.control;
  status_ = state.status;
  pending_command_ = state.pending_command;
  const std::vector<uint8_t>& bytes = state.buffer;
  buffer_.assign(bytes.begin(), bytes.begin() + std::min(bytes.size(), kBufferSize));
}

}  // namespace hearth::devices
