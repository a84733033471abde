// The split-virtqueue chain walker (vmm/devices/virtio/queue.h) and the
// chain I/O helpers on guest memory the fuzzer writes: descriptor tables,
// rings, indirect tables and indices are all hostile. Pops until the queue
// is empty, moves every chain's bytes, and completes everything.
//
// Input: flags u8 (bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 Undo the
// first chain), size u8 (queue size 1 << (size % 10)), desc_table u16,
// avail_ring u16, used_ring u16, next_avail u16, next_used u16, then the
// contents of the 64 KiB of guest RAM from address 0.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_support.h"
#include "vmm/devices/virtio/chain_io.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::fuzz {
namespace {

constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint64_t kMaxCopy = 64 * 1024;

void CheckChain(const memory::GuestMemory& memory, const virtio::Queue& queue,
                const virtio::DescriptorChain& chain) {
  FUZZ_CHECK(chain.head < queue.size());
  // Direct descriptors up to an indirect one, plus one table's worth.
  FUZZ_CHECK(chain.descriptors.size() <= 2u * queue.size());
  uint64_t readable = 0, writable = 0;
  for (const virtio::Descriptor& d : chain.descriptors) {
    FUZZ_CHECK(memory.Contains(d.address, d.length));
    // Device-readable bytes never follow device-writable ones (an empty
    // writable descriptor moves nothing and is let through).
    FUZZ_CHECK(d.writable || writable == 0);
    (d.writable ? writable : readable) += d.length;
  }
  FUZZ_CHECK(readable == chain.readable_bytes);
  FUZZ_CHECK(writable == chain.writable_bytes);
  FUZZ_CHECK(readable + writable <= virtio::kMaxChainBytes);
}

// Moves bytes the way devices do; returns the bytes "written" to the guest.
uint32_t MoveBytes(memory::GuestMemory* memory, const virtio::DescriptorChain& chain) {
  const uint64_t in = std::min(chain.readable_bytes, kMaxCopy);
  std::string buffer(in, '\0');
  FUZZ_CHECK(virtio::ReadFromChain(*memory, chain, 0,
                                   absl::MakeSpan(reinterpret_cast<uint8_t*>(buffer.data()), in))
                 .ok());
  FUZZ_CHECK(!virtio::ReadFromChain(*memory, chain, chain.readable_bytes,
                                    absl::MakeSpan(reinterpret_cast<uint8_t*>(buffer.data()), 1))
                  .ok() ||
             in == 0);
  auto iovecs = virtio::ReadableIovecs(*memory, chain, 0, in);
  FUZZ_CHECK(iovecs.ok());
  uint64_t total = 0;
  for (const iovec& v : *iovecs) total += v.iov_len;
  FUZZ_CHECK(total == in);

  const uint64_t out = std::min(chain.writable_bytes, kMaxCopy);
  std::string pattern(out, '\xa5');
  FUZZ_CHECK(virtio::WriteToChain(
                 memory, chain, 0,
                 absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(pattern.data()), out))
                 .ok());
  auto writable = virtio::WritableIovecs(*memory, chain, 0, out);
  FUZZ_CHECK(writable.ok());
  virtio::MarkWritableDirty(memory, chain, out);
  return static_cast<uint32_t>(out);
}

}  // namespace
}  // namespace hearth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  fuzz::FuzzInput input(data, size);
  const uint8_t flags = input.Get<uint8_t>();
  virtio::QueueConfig config;
  config.size = static_cast<uint16_t>(1u << (input.Get<uint8_t>() % 10));
  config.ready = true;
  config.desc_table = input.Get<uint16_t>();
  config.avail_ring = input.Get<uint16_t>();
  config.used_ring = input.Get<uint16_t>();
  const uint16_t next_avail = input.Get<uint16_t>();
  const uint16_t next_used = input.Get<uint16_t>();

  auto memory = memory::GuestMemory::CreateAnonymous(fuzz::kRamSize, {});
  FUZZ_CHECK(memory.ok());
  std::string ram = input.Bytes(fuzz::kRamSize);
  FUZZ_CHECK(memory->Write(0, ram.data(), ram.size()).ok());

  auto created = virtio::Queue::Create(config, &*memory, flags & 1, flags & 2);
  if (!created.ok()) {
    FUZZ_CHECK(config.size > virtio::kMaxQueueSize || config.desc_table % 16 != 0 ||
               config.avail_ring % 2 != 0 || config.used_ring % 4 != 0 ||
               config.desc_table + 16ull * config.size > fuzz::kRamSize ||
               config.avail_ring + 6ull + 2 * config.size > fuzz::kRamSize ||
               config.used_ring + 6ull + 8 * config.size > fuzz::kRamSize);
    return 0;
  }
  virtio::Queue& queue = *created;
  queue.SetIndices(next_avail, next_used);
  // Undo must give the same chain back; with EVENT_IDX, Pop's avail_event
  // store may land on the ring it reads (the layout is the guest's), so
  // only without it.
  bool undo = (flags & 4) && !(flags & 1);
  for (int i = 0; i < 4 * config.size + 4; ++i) {
    const bool available = queue.HasAvailable();
    virtio::Queue::PopResult popped = queue.Pop();
    if (!available) FUZZ_CHECK(!popped.chain.has_value() && !popped.error.has_value());
    if (popped.chain.has_value()) {
      fuzz::CheckChain(*memory, queue, *popped.chain);
      if (undo) {
        // The same chain comes back.
        undo = false;
        queue.Undo();
        virtio::Queue::PopResult again = queue.Pop();
        FUZZ_CHECK(again.chain.has_value() && again.chain->head == popped.chain->head);
      }
      uint32_t written = fuzz::MoveBytes(&*memory, *popped.chain);
      queue.AddUsed(popped.chain->head, written);
    } else if (popped.error.has_value()) {
      if (queue.broken()) {
        FUZZ_CHECK(!queue.HasAvailable());
        virtio::Queue::PopResult after = queue.Pop();
        FUZZ_CHECK(!after.chain.has_value() && !after.error.has_value());
        break;
      }
      queue.AddUsed(popped.error->head, 0);
    } else {
      break;
    }
  }
  (void)queue.NeedsInterrupt();
  return 0;
}
