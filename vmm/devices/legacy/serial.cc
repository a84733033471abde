#include "vmm/devices/legacy/serial.h"

#include <algorithm>
#include <vector>

namespace hearth::devices {
namespace {

// Register offsets from the base port.
constexpr uint64_t kData = 0;  // RBR/THR, or DLL with DLAB
constexpr uint64_t kIer = 1;   // or DLM with DLAB
constexpr uint64_t kIir = 2;   // read; FCR on write
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRda = 0x01;   // received data available
constexpr uint8_t kIerThre = 0x02;  // transmitter holding register empty
constexpr uint8_t kIerMask = 0x0f;

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirRda = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrIdle = 0x40;

// Modem status with the lines asserted: CTS, DSR, DCD.
constexpr uint8_t kMsrDefault = 0x10 | 0x20 | 0x80;

}  // namespace

Serial::Serial(std::unique_ptr<Interrupt> interrupt, std::shared_ptr<SerialOutput> output)
    : interrupt_(std::move(interrupt)), output_(std::move(output)) {}

void Serial::Read(uint64_t offset, absl::Span<uint8_t> data) {
  if (data.size() != 1) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  absl::MutexLock lock(&mutex_);
  data[0] = ReadRegister(offset);
}

void Serial::Write(uint64_t offset, absl::Span<const uint8_t> data) {
  if (data.size() != 1) return;
  absl::MutexLock lock(&mutex_);
  WriteRegister(offset, data[0]);
}

bool Serial::loopback() const { return mcr_ & kMcrLoop; }

uint8_t Serial::InterruptIdentification() {
  // Priority: received data above THR empty (16550D table 4).
  uint8_t fifo = (fcr_ & kFcrEnable) ? kIirFifoEnabled : 0;
  if ((ier_ & kIerRda) && !rx_fifo_.empty()) return kIirRda | fifo;
  if ((ier_ & kIerThre) && thre_pending_) {
    thre_pending_ = false;  // reading IIR clears a reported THRE interrupt
    return kIirThre | fifo;
  }
  return kIirNone | fifo;
}

uint8_t Serial::ReadRegister(uint64_t offset) {
  bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kData: {
      if (dlab) return dll_;
      if (rx_fifo_.empty()) return 0;
      uint8_t byte = rx_fifo_.front();
      rx_fifo_.pop_front();
      return byte;
    }
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIir:
      return InterruptIdentification();
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return static_cast<uint8_t>(kLsrThrEmpty | kLsrIdle | (rx_fifo_.empty() ? 0 : kLsrDataReady));
    case kMsr:
      if (loopback()) {
        // MCR's DTR, RTS, OUT1, OUT2 loop back to DSR, CTS, RI, DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return kMsrDefault;
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Serial::WriteRegister(uint64_t offset, uint8_t value) {
  bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kData:
      if (dlab) {
        dll_ = value;
        return;
      }
      if (loopback()) {
        if (rx_fifo_.size() < kFifoSize) rx_fifo_.push_back(value);
      } else {
        ++bytes_written_;
        output_->Write(absl::MakeConstSpan(&value, 1));
      }
      // The byte left at once: THR is empty again.
      thre_pending_ = true;
      UpdateInterrupt();
      return;
    case kIer: {
      if (dlab) {
        dlm_ = value;
        return;
      }
      uint8_t enabled = static_cast<uint8_t>(value & kIerMask & ~ier_);
      ier_ = value & kIerMask;
      // Enabling the THRE interrupt while THR is empty raises it at once,
      // as on a real 16550 (Linux's 8250 driver tests for exactly this).
      if (enabled & kIerThre) thre_pending_ = true;
      UpdateInterrupt();
      return;
    }
    case kIir:  // FCR
      fcr_ = value;
      if (value & kFcrClearRx) rx_fifo_.clear();
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      mcr_ = value & kMcrMask;
      return;
    case kScr:
      scr_ = value;
      return;
    default:
      return;  // LSR and MSR are read-only
  }
}

void Serial::UpdateInterrupt() {
  bool rx = (ier_ & kIerRda) && !rx_fifo_.empty();
  bool tx = (ier_ & kIerThre) && thre_pending_;
  if (rx || tx) interrupt_->Trigger();
}

size_t Serial::EnqueueInput(absl::Span<const uint8_t> bytes) {
  absl::MutexLock lock(&mutex_);
  if (loopback()) return 0;  // the line is disconnected in loopback mode
  size_t accepted = std::min(bytes.size(), kFifoSize - rx_fifo_.size());
  rx_fifo_.insert(rx_fifo_.end(), bytes.begin(), bytes.begin() + accepted);
  if (accepted > 0) UpdateInterrupt();
  return accepted;
}

size_t Serial::InputSpace() const {
  absl::MutexLock lock(&mutex_);
  return kFifoSize - rx_fifo_.size();
}

uint64_t Serial::bytes_written() const {
  absl::MutexLock lock(&mutex_);
  return bytes_written_;
}

SerialState Serial::SaveState() const {
  absl::MutexLock lock(&mutex_);
  SerialState state;
  state.ier = ier_;
  state.lcr = lcr_;
  state.mcr = mcr_;
  state.fcr = fcr_;
  state.scr = scr_;
  state.dll = dll_;
  state.dlm = dlm_;
  state.thre_pending = thre_pending_;
  state.rx_fifo.assign(rx_fifo_.begin(), rx_fifo_.end());
  return state;
}

void Serial::RestoreState(const SerialState& state) {
  absl::MutexLock lock(&mutex_);
  ier_ = static_cast<uint8_t>(state.ier & kIerMask);
  lcr_ = state.lcr;
  mcr_ = static_cast<uint8_t>(state.mcr & kMcrMask);
  fcr_ = state.fcr;
  scr_ = state.scr;
  dll_ = state.dll;
  dlm_ = state.dlm;
  thre_pending_ = state.thre_pending;
  const std::vector<uint8_t>& fifo = state.rx_fifo;
  rx_fifo_.assign(fifo.begin(), fifo.begin() + std::min(fifo.size(), kFifoSize));
}

}  // namespace hearth::devices
