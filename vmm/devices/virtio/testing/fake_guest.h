// A guest driver's side of split virtqueues, for unit tests and fuzzers:
// guest RAM (a real GuestMemory), rings laid out in it, and a chain builder
// that writes descriptors and publishes heads the way a virtio driver does
// (virtio 1.2 §2.7.13). Besides well-formed chains it writes whatever a
// hostile guest would: raw descriptors with any address, length, flags and
// next, indirect tables, and arbitrary avail indices. The device side under
// test (Queue, a VirtioDevice) sees nothing but guest memory. FakeDriver
// adds the register side, for tests that go through the virtio-mmio
// transport (snapshots).
#ifndef HEARTH_VMM_DEVICES_VIRTIO_TESTING_FAKE_GUEST_H_
#define HEARTH_VMM_DEVICES_VIRTIO_TESTING_FAKE_GUEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/event_loop.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/virtio/mmio_transport.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/devices/virtio/virtio_device.h"
#include "vmm/devices/virtio/virtio_state.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio::testing {

// One buffer of a chain, in the driver's terms.
struct Buffer {
  uint64_t address;
  uint32_t length;
  bool writable = false;
};

struct UsedElement {
  uint32_t id;
  uint32_t length;
};

// The driver's view of one split virtqueue in guest memory.
class FakeQueue {
 public:
  FakeQueue(memory::GuestMemory* memory, uint16_t size, uint64_t desc_table, uint64_t avail_ring,
            uint64_t used_ring);

  // What the driver would program through the transport.
  QueueConfig config() const;
  uint16_t size() const { return size_; }
  uint64_t desc_table() const { return desc_table_; }
  uint64_t avail_ring() const { return avail_ring_; }
  uint64_t used_ring() const { return used_ring_; }

  // Writes `buffers` as a chain of direct descriptors (taken round-robin
  // from the table) and publishes its head. Returns the head index.
  uint16_t AddChain(const std::vector<Buffer>& buffers);
  // Writes `buffers` as an indirect table at `table` (16-byte aligned, in
  // RAM) referenced by one direct descriptor, and publishes it.
  uint16_t AddIndirectChain(const std::vector<Buffer>& buffers, uint64_t table);

  // Hostile-driver tools: a raw descriptor at `index` of the table, or at
  // any guest address (an indirect table entry).
  void WriteDescriptor(uint16_t index, uint64_t address, uint32_t length, uint16_t flags,
                       uint16_t next);
  void WriteDescriptorAt(uint64_t guest_address, uint64_t address, uint32_t length, uint16_t flags,
                         uint16_t next);
  // Puts `head` in the next avail slot and bumps avail idx by one.
  void Publish(uint16_t head);
  void SetAvailIdx(uint16_t idx);
  uint16_t avail_idx() const;

  // The used ring as the device left it.
  uint16_t used_idx() const;
  UsedElement used(uint16_t position) const;  // ring slot position % size
  // Used elements published since the last call.
  std::vector<UsedElement> TakeUsed();

  // Interrupt suppression: VIRTQ_AVAIL_F_NO_INTERRUPT, and with
  // VIRTIO_F_EVENT_IDX the used_event field (after the avail ring).
  void SetNoInterrupt(bool on);
  void SetUsedEvent(uint16_t value);
  // avail_event (after the used ring), written by the device.
  uint16_t avail_event() const;

 private:
  memory::GuestMemory* memory_;
  uint16_t size_;
  uint64_t desc_table_;
  uint64_t avail_ring_;
  uint64_t used_ring_;
  uint16_t next_descriptor_ = 0;
  uint16_t last_seen_used_ = 0;
};

// Guest RAM plus a bump allocator for rings and buffers.
class FakeGuest {
 public:
  static constexpr uint64_t kDefaultMemorySize = 16ull << 20;
  // Nothing is allocated below this address (page 0 stays free so a test
  // can use small addresses as "obviously wrong").
  static constexpr uint64_t kFirstAllocation = 0x10000;

  explicit FakeGuest(uint64_t memory_size = kDefaultMemorySize);

  memory::GuestMemory* memory() { return &memory_; }
  const memory::GuestMemory& memory_ref() const { return memory_; }

  // Lays out a queue (descriptor table, avail ring with used_event, used
  // ring with avail_event, each suitably aligned) in fresh memory.
  FakeQueue* AddQueue(uint16_t size);
  FakeQueue* queue(size_t index) { return queues_[index].get(); }

  // `length` bytes of fresh, zeroed guest memory aligned to `alignment`.
  uint64_t Allocate(uint64_t length, uint64_t alignment = 16);
  // Copies `bytes` to fresh guest memory; returns its address.
  uint64_t Put(absl::string_view bytes);
  void Write(uint64_t address, absl::string_view bytes);
  std::string Read(uint64_t address, uint64_t length) const;
  // A raw descriptor anywhere in RAM (an indirect table entry).
  void WriteDescriptorAt(uint64_t guest_address, uint64_t address, uint32_t length, uint16_t flags,
                         uint16_t next);

  // A device-readable buffer holding `bytes`, or a zeroed writable one.
  Buffer Readable(absl::string_view bytes);
  Buffer Writable(uint32_t length);

 private:
  memory::GuestMemory memory_;
  uint64_t next_free_ = kFirstAllocation;
  std::vector<std::unique_ptr<FakeQueue>> queues_;
};

// A VirtioInterrupt whose line is a counter the test can read.
class TestInterrupt {
 public:
  TestInterrupt();
  VirtioInterrupt* get() { return &interrupt_; }
  // Line triggers so far.
  uint64_t count() const { return line_->count(); }
  uint32_t status() const { return interrupt_.status(); }

 private:
  devices::CountingInterrupt* line_;
  VirtioInterrupt interrupt_;
};

// What the transport would hand a device at DRIVER_OK: one Queue per
// FakeQueue (nullptr: not set up). CHECK-fails on an invalid layout.
ActivateContext MakeActivateContext(FakeGuest* guest, const std::vector<FakeQueue*>& queues,
                                    VirtioInterrupt* interrupt, EventLoop* event_loop,
                                    uint64_t acked_features);

// The driver's side of virtio-mmio (virtio 1.2 §4.2.3): a real MmioTransport
// in front of the device under test, with a counting interrupt line,
// programmed through its registers. Snapshot tests save one and restore
// into a fresh one over the same guest memory.
class FakeDriver {
 public:
  FakeDriver(std::shared_ptr<VirtioDevice> device, FakeGuest* guest, EventLoop* event_loop);

  MmioTransport* transport() { return transport_.get(); }
  uint32_t Read(uint64_t offset);
  void Write(uint64_t offset, uint32_t value);

  // Device initialisation (virtio 1.2 §3.1.1): ACKNOWLEDGE, DRIVER,
  // `features`, FEATURES_OK, each of `queues` (nullptr: left unset),
  // DRIVER_OK; then runs the activation the transport posted to the event
  // loop. CHECK-fails if the device did not come up.
  void Initialize(uint64_t features, const std::vector<FakeQueue*>& queues);
  // The transport's and device's snapshot state, as the VMM saves it.
  // CHECK-fails if saving fails.
  VirtioState SaveState();
  // A kick of queue `index`, as its ioeventfd delivers it.
  void Kick(uint32_t index) { transport_->Notify(index); }
  // Interrupt line triggers so far.
  uint64_t interrupts() const { return line_->count(); }

 private:
  EventLoop* event_loop_;
  devices::CountingInterrupt* line_;
  std::unique_ptr<MmioTransport> transport_;
};

}  // namespace hearth::virtio::testing

#endif  // HEARTH_VMM_DEVICES_VIRTIO_TESTING_FAKE_GUEST_H_
