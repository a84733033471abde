#include "vmm/devices/virtio/queue.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hearth::virtio {
namespace {

// virtq_desc (virtio 1.2 §2.7.5).
struct __attribute__((packed)) RawDescriptor {
  uint64_t address;
  uint32_t length;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(RawDescriptor) == 16);

constexpr uint64_t kRingHeader = 4;  // flags + idx
constexpr uint64_t kUsedElementSize = 8;

bool PowerOfTwo(uint32_t n) { return n != 0 && (n & (n - 1)) == 0; }

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(what); }

}  // namespace

absl::StatusOr<Queue> Queue::Create(const QueueConfig& config, memory::GuestMemory* memory,
                                    bool event_idx, bool indirect) {
  const uint64_t n = config.size;
  if (!PowerOfTwo(config.size) || config.size > kMaxQueueSize) {
    return Bad(absl::StrCat("queue size ", n, " is not a power of two in 1..", kMaxQueueSize));
  }
  struct Ring {
    const char* name;
    uint64_t address;
    uint64_t length;
    uint64_t alignment;
  };
  const Ring rings[] = {
      {"descriptor table", config.desc_table, 16 * n, 16},
      {"available ring", config.avail_ring, kRingHeader + 2 * n + 2, 2},
      {"used ring", config.used_ring, kRingHeader + kUsedElementSize * n + 2, 4},
  };
  for (const Ring& ring : rings) {
    if (ring.address % ring.alignment != 0) {
      return Bad(absl::StrCat(ring.name, " at 0x", absl::Hex(ring.address), " is not ",
                              ring.alignment, "-byte aligned"));
    }
    if (!memory->Contains(ring.address, ring.length)) {
      return Bad(absl::StrCat(ring.name, " [0x", absl::Hex(ring.address), ", +", ring.length,
                              ") is outside guest RAM"));
    }
  }
  return Queue(memory, config, event_idx, indirect);
}

Queue::Queue(memory::GuestMemory* memory, const QueueConfig& config, bool event_idx, bool indirect)
    : memory_(memory),
      size_(config.size),
      desc_table_(config.desc_table),
      avail_ring_(config.avail_ring),
      used_ring_(config.used_ring),
      event_idx_(event_idx),
      indirect_(indirect) {}

std::optional<uint16_t> Queue::ReadAvailIndex() const {
  absl::StatusOr<uint16_t> idx = memory_->LoadU16(avail_ring_ + 2);
  // See the descriptors only after the index that published them.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (!idx.ok()) return std::nullopt;  // checked in Create; cannot happen
  return *idx;
}

bool Queue::HasAvailable() const {
  if (broken_) return false;
  std::optional<uint16_t> idx = ReadAvailIndex();
  return idx.has_value() && *idx != next_avail_;
}

Queue::PopResult Queue::Pop() {
  PopResult result;
  if (broken_) return result;
  std::optional<uint16_t> avail_idx = ReadAvailIndex();
  if (!avail_idx.has_value()) return result;
  uint16_t pending = static_cast<uint16_t>(*avail_idx - next_avail_);
  if (pending == 0) return result;
  if (pending > size_) {
    broken_ = true;
    result.error = ChainError{
        0xffff, absl::StrCat("available index ", *avail_idx, " is ", pending, " ahead of ",
                             next_avail_, " (queue size ", size_, "); queue disabled until reset")};
    return result;
  }
  uint64_t slot = avail_ring_ + kRingHeader + 2ull * (next_avail_ % size_);
  absl::StatusOr<uint16_t> head = memory_->ReadObject<uint16_t>(slot);
  ++next_avail_;
  if (event_idx_ && notifications_) {
    // avail_event: kick us when the driver publishes past this index.
    StoreUsedRingU16(used_ring_ + kRingHeader + kUsedElementSize * size_, next_avail_);
  }
  DescriptorChain chain;
  chain.head = head.ok() ? *head : 0;
  absl::Status walked = head.ok() ? WalkChain(chain.head, &chain) : head.status();
  if (!walked.ok()) {
    result.error = ChainError{chain.head, std::string(walked.message())};
  } else {
    result.chain = std::move(chain);
  }
  return result;
}

void Queue::Undo() { --next_avail_; }

void Queue::SetNotifications(bool enabled) {
  notifications_ = enabled;
  if (event_idx_) {
    // Enabled: kick us for anything past what we have taken. Disabled: the
    // index stays behind the driver's, which then does not kick.
    if (enabled) {
      StoreUsedRingU16(used_ring_ + kRingHeader + kUsedElementSize * size_, next_avail_);
    }
    return;
  }
  StoreUsedRingU16(used_ring_, enabled ? 0 : kVirtqUsedFNoNotify);
}

absl::Status Queue::AppendDescriptor(uint64_t address, uint32_t length, bool writable,
                                     DescriptorChain* chain) const {
  if (!memory_->Contains(address, length)) {
    return Bad(absl::StrCat("descriptor buffer [0x", absl::Hex(address), ", +", length,
                            ") is outside guest RAM"));
  }
  if (!writable && chain->writable_bytes > 0) {
    return Bad("device-readable descriptor after a device-writable one");
  }
  uint64_t& total = writable ? chain->writable_bytes : chain->readable_bytes;
  total += length;
  if (chain->readable_bytes + chain->writable_bytes > kMaxChainBytes) {
    return Bad("chain moves more than 4 GiB");
  }
  chain->descriptors.push_back({address, length, writable});
  return absl::OkStatus();
}

absl::Status Queue::WalkChain(uint16_t head, DescriptorChain* chain) const {
  uint16_t index = head;
  for (uint32_t count = 1;; ++count) {
    if (index >= size_) {
      return Bad(absl::StrCat("descriptor index ", index, " >= queue size ", size_));
    }
    if (count > size_) return Bad("descriptor chain loops or exceeds the queue size");
    ASSIGN_OR_RETURN(RawDescriptor d,
                     memory_->ReadObject<RawDescriptor>(desc_table_ + 16ull * index));
    if (d.flags & kVirtqDescFIndirect) {
      if (!indirect_)
        return Bad("indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not negotiated");
      if (d.flags & kVirtqDescFNext) return Bad("indirect descriptor also has NEXT set");
      if (d.length == 0 || d.length % 16 != 0 || d.length / 16 > size_) {
        return Bad(absl::StrCat("indirect table length ", d.length,
                                " is not a non-zero multiple of 16 within the queue size"));
      }
      if (!memory_->Contains(d.address, d.length)) {
        return Bad("indirect table is outside guest RAM");
      }
      const uint32_t entries = d.length / 16;
      uint32_t i = 0;
      for (uint32_t walked = 1;; ++walked) {
        if (walked > entries) return Bad("indirect chain loops");
        ASSIGN_OR_RETURN(RawDescriptor e,
                         memory_->ReadObject<RawDescriptor>(d.address + 16ull * i));
        if (e.flags & kVirtqDescFIndirect) return Bad("nested indirect descriptor");
        RETURN_IF_ERROR(AppendDescriptor(e.address, e.length, e.flags & kVirtqDescFWrite, chain));
        if (!(e.flags & kVirtqDescFNext)) break;
        i = e.next;
        if (i >= entries) {
          return Bad(absl::StrCat("indirect descriptor index ", i, " >= table size ", entries));
        }
      }
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(AppendDescriptor(d.address, d.length, d.flags & kVirtqDescFWrite, chain));
    if (!(d.flags & kVirtqDescFNext)) return absl::OkStatus();
    index = d.next;
  }
}

void Queue::AddUsed(uint16_t head, uint32_t length) {
  uint64_t element = used_ring_ + kRingHeader + kUsedElementSize * (next_used_ % size_);
  uint32_t raw[2] = {head, length};
  if (!memory_->Write(element, raw, sizeof(raw)).ok()) {
    broken_ = true;
    return;
  }
  ++next_used_;
  // The element must be visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  if (!memory_->StoreU16(used_ring_ + 2, next_used_).ok()) broken_ = true;
}

void Queue::StoreUsedRingU16(uint64_t address, uint16_t value) {
  // Cannot fail: `address` is in the used ring, which Create checked lies
  // in guest RAM (and RAM does not move).
  (void)memory_->StoreU16(address, value);
}

bool Queue::NeedsInterrupt() {
  // Order our used-index store before reading the driver's suppression state.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (event_idx_) {
    absl::StatusOr<uint16_t> used_event =
        memory_->LoadU16(avail_ring_ + kRingHeader + 2ull * size_);
    uint16_t old = signalled_used_;
    signalled_used_ = next_used_;
    if (!used_event.ok()) return true;
    // vring_need_event() from the virtio spec §2.7.10.
    return static_cast<uint16_t>(next_used_ - *used_event - 1) <
           static_cast<uint16_t>(next_used_ - old);
  }
  absl::StatusOr<uint16_t> flags = memory_->LoadU16(avail_ring_);
  return !flags.ok() || !(*flags & kVirtqAvailFNoInterrupt);
}

}  // namespace hearth::virtio
