// A split virtqueue (virtio 1.2 §2.7) as the device sees it, with every value
// the guest controls checked before use: ring addresses and sizes must lie in
// guest RAM, descriptor indices must be below the queue size, chains may not
// loop or exceed the queue size, indirect tables must be well-formed, the
// total length is bounded, and device-readable descriptors must precede
// device-writable ones. A malformed chain is returned as an error carrying
// its head index, so the device can complete it (used length 0) and count it;
// a malformed ring (avail index jumping ahead by more than the queue size)
// marks the queue broken until the device is reset.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_QUEUE_H_
#define HEARTH_VMM_DEVICES_VIRTIO_QUEUE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio {

inline constexpr uint16_t kVirtqDescFNext = 1;
inline constexpr uint16_t kVirtqDescFWrite = 2;
inline constexpr uint16_t kVirtqDescFIndirect = 4;
inline constexpr uint16_t kVirtqAvailFNoInterrupt = 1;
inline constexpr uint16_t kVirtqUsedFNoNotify = 1;

// The largest queue Hearth offers, and so the longest chain it accepts.
inline constexpr uint16_t kMaxQueueSize = 256;
// No request may move more than this many bytes.
inline constexpr uint64_t kMaxChainBytes = 1ull << 32;

// What the driver configured through the transport (virtio-mmio registers).
struct QueueConfig {
  uint16_t size = 0;
  bool ready = false;
  uint64_t desc_table = 0;
  uint64_t avail_ring = 0;
  uint64_t used_ring = 0;
};

struct Descriptor {
  uint64_t address;
  uint32_t length;
  bool writable;
};

// One request: the head index (to complete it) and its descriptors in order,
// indirect tables flattened.
struct DescriptorChain {
  uint16_t head = 0;
  absl::InlinedVector<Descriptor, 8> descriptors;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;

  // Empty again, for reuse. (Tests use it rather than assigning a
  // temporary, which gcc 12 at -O2 wrongly warns about for InlinedVector.)
  void Clear() {
    head = 0;
    descriptors.clear();
    readable_bytes = 0;
    writable_bytes = 0;
  }
};

// A chain the guest built wrong. The device completes `head` with length 0.
struct ChainError {
  uint16_t head;
  std::string reason;
};

class Queue {
 public:
  // Checks `config` against guest memory (sizes, alignment, every ring inside
  // RAM). `event_idx` and `indirect` are the negotiated features.
  static absl::StatusOr<Queue> Create(const QueueConfig& config, memory::GuestMemory* memory,
                                      bool event_idx, bool indirect);

  // The next available chain, nothing if the ring is empty or broken, or a
  // ChainError for a malformed chain (already consumed from the ring).
  struct PopResult {
    std::optional<DescriptorChain> chain;
    std::optional<ChainError> error;
  };
  PopResult Pop();

  // Puts `head` back: the next Pop() returns it again (e.g. a net rx chain
  // that could not be used yet).
  void Undo();

  // Publishes a completed request. Nothing to check: the used ring lies in
  // guest RAM (Create made sure), so its writes cannot fail; were one to,
  // the queue would be marked broken rather than publish a partial element.
  void AddUsed(uint16_t head, uint32_t length);

  // Whether the driver wants an interrupt for what was published since the
  // last call (VIRTIO_F_EVENT_IDX or VIRTQ_AVAIL_F_NO_INTERRUPT).
  bool NeedsInterrupt();

  // True if the driver has made chains available that Pop() has not taken.
  bool HasAvailable() const;

  // Whether the driver should notify (kick) the device for new chains. A
  // device that is busy or polling turns them off and back on before it
  // goes to sleep, then looks at the ring once more (a chain published in
  // between would otherwise wait for the next kick). On by default.
  void SetNotifications(bool enabled);

  // The ring is unusable (the driver broke the protocol); Pop() returns
  // nothing until the device is reset.
  bool broken() const { return broken_; }
  uint16_t size() const { return size_; }
  uint16_t next_avail() const { return next_avail_; }
  uint16_t next_used() const { return next_used_; }
  // For snapshot restore.
  void SetIndices(uint16_t next_avail, uint16_t next_used) {
    next_avail_ = next_avail;
    next_used_ = next_used;
    signalled_used_ = next_used;
  }
  void MarkBroken() { broken_ = true; }

 private:
  Queue(memory::GuestMemory* memory, const QueueConfig& config, bool event_idx, bool indirect);
  std::optional<uint16_t> ReadAvailIndex() const;
  absl::Status WalkChain(uint16_t head, DescriptorChain* chain) const;
  // Stores into the used ring (its flags or avail_event): hints to the
  // driver, in RAM Create checked, so there is no failure to report.
  void StoreUsedRingU16(uint64_t address, uint16_t value);
  absl::Status AppendDescriptor(uint64_t address, uint32_t length, bool writable,
                                DescriptorChain* chain) const;

  memory::GuestMemory* memory_;
  uint16_t size_;
  uint64_t desc_table_;
  uint64_t avail_ring_;
  uint64_t used_ring_;
  bool event_idx_;
  bool indirect_;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool broken_ = false;
  bool notifications_ = true;
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_QUEUE_H_
