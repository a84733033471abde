// virtio-blk request parsing (vmm/devices/virtio/block/request.h) and the
// block device executing the request against a small in-memory disk
// (memfd): every header field, buffer layout, data length and capacity comes
// from the fuzzer.
//
// Input: capacity u16 (in sectors; the disk's size), flags u8 (bit 0
// read-only, bit 1 indirect chain, bit 2 huge capacity for the parser),
// buffer count u8 (1..8), per buffer {length u16, writable u8}, then the
// bytes that fill the readable buffers in order (the first 16 are the
// request header).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "tests/fuzz/fuzz_support.h"
#include "vmm/devices/virtio/block/block.h"
#include "vmm/devices/virtio/block/request.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::fuzz {
namespace {

using virtio::testing::Buffer;

constexpr uint64_t kRamSize = 2 << 20;

void CheckParse(const virtio::DescriptorChain& chain, const memory::GuestMemory& memory,
                uint64_t capacity, bool read_only) {
  virtio::BlockParseError error;
  absl::StatusOr<virtio::BlockRequest> request =
      virtio::ParseBlockRequest(memory, chain, capacity, read_only, &error);
  if (!request.ok()) {
    FUZZ_CHECK(error.status_writable == (chain.writable_bytes >= 1));
    FUZZ_CHECK(error.status == virtio::kBlkSIoErr || error.status == virtio::kBlkSUnsupp);
    FUZZ_CHECK(!error.reason.empty());
    return;
  }
  FUZZ_CHECK(chain.writable_bytes >= 1 && chain.readable_bytes >= 16);
  switch (request->type) {
    case virtio::kBlkTIn:
    case virtio::kBlkTOut: {
      FUZZ_CHECK(request->type == virtio::kBlkTIn || !read_only);
      const uint64_t stream =
          request->type == virtio::kBlkTIn ? chain.writable_bytes - 1 : chain.readable_bytes - 16;
      FUZZ_CHECK(request->data_length == stream);
      FUZZ_CHECK(request->data_length % virtio::kSectorSize == 0);
      const unsigned __int128 end = static_cast<unsigned __int128>(request->sector) +
                                    request->data_length / virtio::kSectorSize;
      FUZZ_CHECK(end <= capacity);
      break;
    }
    case virtio::kBlkTGetId:
      FUZZ_CHECK(request->data_length == virtio::kBlkIdBytes);
      FUZZ_CHECK(chain.writable_bytes - 1 >= virtio::kBlkIdBytes);
      break;
    case virtio::kBlkTFlush:
      FUZZ_CHECK(request->data_length == 0);
      break;
    default:
      FUZZ_CHECK(false && "unknown type parsed as valid");
  }
}

}  // namespace
}  // namespace hearth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  fuzz::FuzzInput input(data, size);
  const uint64_t disk_sectors = input.Get<uint16_t>() % 129;  // up to 64 KiB
  const uint8_t flags = input.Get<uint8_t>();
  const bool read_only = flags & 1;
  const size_t count = 1 + input.Get<uint8_t>() % 8;
  struct Spec {
    uint32_t length;
    bool writable;
  };
  std::vector<Spec> specs;
  for (size_t i = 0; i < count; ++i) {
    uint32_t length = input.Get<uint16_t>() % (64 * 1024 + 1);
    specs.push_back({length, input.Bool()});
  }
  // Readable buffers first: a chain in any other order never leaves Queue.
  std::stable_partition(specs.begin(), specs.end(), [](const Spec& s) { return !s.writable; });

  virtio::testing::FakeGuest guest(fuzz::kRamSize);
  virtio::testing::FakeQueue* queue = guest.AddQueue(16);
  std::vector<virtio::testing::Buffer> buffers;
  for (const Spec& spec : specs) {
    virtio::testing::Buffer buffer{guest.Allocate(spec.length), spec.length, spec.writable};
    // Readable buffers take the next input bytes (zeros past the end);
    // writable ones start as 0xee so the status byte can be checked.
    guest.Write(buffer.address,
                spec.writable ? std::string(spec.length, '\xee') : input.Bytes(spec.length));
    buffers.push_back(buffer);
  }
  if (flags & 2) {
    queue->AddIndirectChain(buffers, guest.Allocate(16 * buffers.size()));
  } else {
    queue->AddChain(buffers);
  }

  // The parser, on the chain the queue hands out.
  auto parse_queue = virtio::Queue::Create(queue->config(), guest.memory(), false, true);
  FUZZ_CHECK(parse_queue.ok());
  virtio::Queue::PopResult popped = parse_queue->Pop();
  FUZZ_CHECK(popped.chain.has_value());
  const uint64_t parse_capacity = (flags & 4) ? ~0ull - disk_sectors : disk_sectors;
  fuzz::CheckParse(*popped.chain, guest.memory_ref(), parse_capacity, read_only);

  // The device, on a disk of `disk_sectors` sectors (the loop outlives it).
  auto loop = EventLoop::Create();
  FUZZ_CHECK(loop.ok());
  virtio::testing::TestInterrupt interrupt;
  int fd = ::memfd_create("fuzz-disk", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(::ftruncate(fd, static_cast<off_t>(disk_sectors * virtio::kSectorSize)) == 0);
  auto block =
      virtio::Block::Create("fuzz", UniqueFd(fd), read_only, *vmm::RateLimiter::Create({}));
  FUZZ_CHECK(block.ok());
  FUZZ_CHECK((*block)
                 ->Activate(virtio::testing::MakeActivateContext(
                     &guest, {queue}, interrupt.get(), loop->get(),
                     virtio::kFeatureVersion1 | virtio::kFeatureIndirectDesc))
                 .ok());
  std::vector<virtio::testing::UsedElement> used = queue->TakeUsed();
  FUZZ_CHECK(used.size() == 1);
  const uint64_t writable = popped.chain->writable_bytes;
  FUZZ_CHECK(used[0].length <= writable);
  FUZZ_CHECK((used[0].length == 0) == (writable == 0));
  if (writable > 0) {
    // The status byte (the last writable byte; buffers were filled with
    // 0xee) holds a virtio-blk status.
    const virtio::Descriptor* last = nullptr;
    for (const virtio::Descriptor& d : popped.chain->descriptors) {
      if (d.writable && d.length > 0) last = &d;
    }
    FUZZ_CHECK(last != nullptr);
    uint8_t status = static_cast<uint8_t>(guest.Read(last->address + last->length - 1, 1)[0]);
    FUZZ_CHECK(status == virtio::kBlkSOk || status == virtio::kBlkSIoErr ||
               status == virtio::kBlkSUnsupp);
  }
  const auto& metrics = (*block)->metrics();
  FUZZ_CHECK(metrics.requests.Get() + metrics.errors.Get() == 1);
  return 0;
}
