// An 8250/16550A UART, as much of it as Linux's 8250 driver and a simple
// polling guest need: THR/RBR with a 64-byte receive FIFO, IER, IIR with the
// 16550 FIFO bits, LCR/DLAB and the divisor latch, MCR with loopback, LSR,
// MSR, SCR. Transmitted bytes go to an output sink immediately (the line is
// infinitely fast), so THR is always empty.
//
// Register semantics: National Semiconductor PC16550D datasheet, §8.
#ifndef HEARTH_VMM_DEVICES_LEGACY_SERIAL_H_
#define HEARTH_VMM_DEVICES_LEGACY_SERIAL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "vmm/bus/bus.h"
#include "vmm/devices/interrupt.h"

namespace hearth::devices {

// The UART's snapshot state: its registers and the input the guest has not
// read. (vmm/devices/legacy/persist.h converts it to the snapshot format.)
struct SerialState {
  uint8_t ier = 0;
  uint8_t lcr = 0;
  uint8_t mcr = 0;
  uint8_t fcr = 0;
  uint8_t scr = 0;
  uint8_t dll = 0;
  uint8_t dlm = 0;
  bool thre_pending = false;
  std::vector<uint8_t> rx_fifo;

  bool operator==(const SerialState& other) const {
    return ier == other.ier && lcr == other.lcr && mcr == other.mcr && fcr == other.fcr &&
           scr == other.scr && dll == other.dll && dlm == other.dlm &&
           thre_pending == other.thre_pending && rx_fifo == other.rx_fifo;
  }
};

// Where the guest's serial output goes (stdout, the agent's console socket).
class SerialOutput {
 public:
  virtual ~SerialOutput() = default;
  virtual void Write(absl::Span<const uint8_t> bytes) = 0;
};

class Serial : public bus::BusDevice {
 public:
  static constexpr size_t kFifoSize = 64;

  Serial(std::unique_ptr<Interrupt> interrupt, std::shared_ptr<SerialOutput> output);

  void Read(uint64_t offset, absl::Span<uint8_t> data) override;
  void Write(uint64_t offset, absl::Span<const uint8_t> data) override;

  // Queues bytes typed into the console; returns how many fit in the FIFO.
  size_t EnqueueInput(absl::Span<const uint8_t> bytes);
  // Free space in the receive FIFO (the event loop stops reading input
  // when it is 0, so nothing is buffered without bound).
  size_t InputSpace() const;

  // Bytes the guest has written to THR.
  uint64_t bytes_written() const;

  // Snapshots: the registers and the unread input.
  // Restore keeps the first kFifoSize bytes of input and masks reserved
  // register bits.
  SerialState SaveState() const;
  void RestoreState(const SerialState& state);

 private:
  uint8_t ReadRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void WriteRegister(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Raises the line if an enabled interrupt is pending.
  void UpdateInterrupt() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  uint8_t InterruptIdentification() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  bool loopback() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::unique_ptr<Interrupt> interrupt_;
  const std::shared_ptr<SerialOutput> output_;

  mutable absl::Mutex mutex_;
  std::deque<uint8_t> rx_fifo_ ABSL_GUARDED_BY(mutex_);
  uint8_t ier_ ABSL_GUARDED_BY(mutex_) = 0;
  uint8_t lcr_ ABSL_GUARDED_BY(mutex_) = 0x03;  // 8N1
  uint8_t mcr_ ABSL_GUARDED_BY(mutex_) = 0x08;  // OUT2
  uint8_t fcr_ ABSL_GUARDED_BY(mutex_) = 0;
  uint8_t scr_ ABSL_GUARDED_BY(mutex_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mutex_) = 0x0c;  // 9600 baud
  uint8_t dlm_ ABSL_GUARDED_BY(mutex_) = 0;
  // A THR-empty interrupt is pending until IIR reports it or THR is written.
  bool thre_pending_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t bytes_written_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace hearth::devices

#endif  // HEARTH_VMM_DEVICES_LEGACY_SERIAL_H_
