// How a device raises its interrupt line without knowing about KVM: the VMM
// hands virtio devices an Interrupt backed by an irqfd (an eventfd that KVM
// turns into an edge on the device's GSI) and the serial port and i8042 one
// that uses KVM_IRQ_LINE (builder.cc); tests hand it a counter.
#ifndef HEARTH_VMM_DEVICES_INTERRUPT_H_
#define HEARTH_VMM_DEVICES_INTERRUPT_H_

#include <atomic>
#include <cstdint>

#include "common/event_fd.h"

namespace hearth::devices {

class Interrupt {
 public:
  virtual ~Interrupt() = default;
  virtual void Trigger() = 0;
  // Triggers that could not be delivered (lost interrupts), for metrics.
  virtual uint64_t failures() const { return 0; }
};

// Signals an eventfd registered with KVM_IRQFD.
class EventFdInterrupt : public Interrupt {
 public:
  explicit EventFdInterrupt(EventFd eventfd) : eventfd_(std::move(eventfd)) {}
  void Trigger() override {
    if (!eventfd_.Write(1).ok()) failures_.fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t failures() const override { return failures_.load(std::memory_order_relaxed); }

 private:
  EventFd eventfd_;
  std::atomic<uint64_t> failures_{0};
};

// Counts triggers; for unit tests.
class CountingInterrupt : public Interrupt {
 public:
  void Trigger() override { count_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> count_{0};
};

}  // namespace hearth::devices

#endif  // HEARTH_VMM_DEVICES_INTERRUPT_H_
