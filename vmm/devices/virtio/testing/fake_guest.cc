#include "vmm/devices/virtio/testing/fake_guest.h"

#include <cstring>

#include "glog/logging.h"

namespace hearth::virtio::testing {
namespace {

// virtq_desc (virtio 1.2 §2.7.5), as the driver writes it.
struct __attribute__((packed)) RawDescriptor {
  uint64_t address;
  uint32_t length;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(RawDescriptor) == 16);

constexpr uint64_t kRingHeader = 4;  // flags + idx

template <typename T>
T ReadOrDie(const memory::GuestMemory& memory, uint64_t address) {
  absl::StatusOr<T> value = memory.ReadObject<T>(address);
  CHECK(value.ok()) << value.status();
  return *value;
}

template <typename T>
void WriteOrDie(memory::GuestMemory* memory, uint64_t address, const T& value) {
  absl::Status status = memory->WriteObject<T>(address, value);
  CHECK(status.ok()) << status;
}

}  // namespace

FakeQueue::FakeQueue(memory::GuestMemory* memory, uint16_t size, uint64_t desc_table,
                     uint64_t avail_ring, uint64_t used_ring)
    : memory_(memory),
      size_(size),
      desc_table_(desc_table),
      avail_ring_(avail_ring),
      used_ring_(used_ring) {}

QueueConfig FakeQueue::config() const {
  QueueConfig config;
  config.size = size_;
  config.ready = true;
  config.desc_table = desc_table_;
  config.avail_ring = avail_ring_;
  config.used_ring = used_ring_;
  return config;
}

void FakeQueue::WriteDescriptorAt(uint64_t guest_address, uint64_t address, uint32_t length,
                                  uint16_t flags, uint16_t next) {
  WriteOrDie(memory_, guest_address, RawDescriptor{address, length, flags, next});
}

void FakeGuest::WriteDescriptorAt(uint64_t guest_address, uint64_t address, uint32_t length,
                                  uint16_t flags, uint16_t next) {
  WriteOrDie(&memory_, guest_address, RawDescriptor{address, length, flags, next});
}

void FakeQueue::WriteDescriptor(uint16_t index, uint64_t address, uint32_t length, uint16_t flags,
                                uint16_t next) {
  CHECK_LT(index, size_);
  WriteDescriptorAt(desc_table_ + 16ull * index, address, length, flags, next);
}

uint16_t FakeQueue::AddChain(const std::vector<Buffer>& buffers) {
  CHECK(!buffers.empty());
  CHECK_LE(buffers.size(), size_);
  std::vector<uint16_t> indices;
  for (size_t i = 0; i < buffers.size(); ++i) {
    indices.push_back(next_descriptor_);
    next_descriptor_ = static_cast<uint16_t>((next_descriptor_ + 1) % size_);
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    const bool last = i + 1 == buffers.size();
    uint16_t flags = (buffers[i].writable ? kVirtqDescFWrite : 0) | (last ? 0 : kVirtqDescFNext);
    WriteDescriptor(indices[i], buffers[i].address, buffers[i].length, flags,
                    last ? 0 : indices[i + 1]);
  }
  Publish(indices[0]);
  return indices[0];
}

uint16_t FakeQueue::AddIndirectChain(const std::vector<Buffer>& buffers, uint64_t table) {
  CHECK(!buffers.empty());
  for (size_t i = 0; i < buffers.size(); ++i) {
    const bool last = i + 1 == buffers.size();
    uint16_t flags = (buffers[i].writable ? kVirtqDescFWrite : 0) | (last ? 0 : kVirtqDescFNext);
    WriteDescriptorAt(table + 16 * i, buffers[i].address, buffers[i].length, flags,
                      last ? 0 : static_cast<uint16_t>(i + 1));
  }
  uint16_t head = next_descriptor_;
  next_descriptor_ = static_cast<uint16_t>((next_descriptor_ + 1) % size_);
  WriteDescriptor(head, table, static_cast<uint32_t>(16 * buffers.size()), kVirtqDescFIndirect, 0);
  Publish(head);
  return head;
}

void FakeQueue::Publish(uint16_t head) {
  uint16_t idx = avail_idx();
  WriteOrDie(memory_, avail_ring_ + kRingHeader + 2ull * (idx % size_), head);
  SetAvailIdx(static_cast<uint16_t>(idx + 1));
}

void FakeQueue::SetAvailIdx(uint16_t idx) { WriteOrDie(memory_, avail_ring_ + 2, idx); }

uint16_t FakeQueue::avail_idx() const { return ReadOrDie<uint16_t>(*memory_, avail_ring_ + 2); }

uint16_t FakeQueue::used_idx() const { return ReadOrDie<uint16_t>(*memory_, used_ring_ + 2); }

UsedElement FakeQueue::used(uint16_t position) const {
  uint64_t element = used_ring_ + kRingHeader + 8ull * (position % size_);
  return UsedElement{ReadOrDie<uint32_t>(*memory_, element),
                     ReadOrDie<uint32_t>(*memory_, element + 4)};
}

std::vector<UsedElement> FakeQueue::TakeUsed() {
  std::vector<UsedElement> elements;
  const uint16_t end = used_idx();
  for (; last_seen_used_ != end; ++last_seen_used_) {
    elements.push_back(used(last_seen_used_));
  }
  return elements;
}

void FakeQueue::SetNoInterrupt(bool on) {
  WriteOrDie<uint16_t>(memory_, avail_ring_, on ? kVirtqAvailFNoInterrupt : 0);
}

void FakeQueue::SetUsedEvent(uint16_t value) {
  WriteOrDie(memory_, avail_ring_ + kRingHeader + 2ull * size_, value);
}

uint16_t FakeQueue::avail_event() const {
  return ReadOrDie<uint16_t>(*memory_, used_ring_ + kRingHeader + 8ull * size_);
}

FakeGuest::FakeGuest(uint64_t memory_size) {
  absl::StatusOr<memory::GuestMemory> memory =
      memory::GuestMemory::CreateAnonymous(memory_size, {});
  CHECK(memory.ok()) << memory.status();
  memory_ = std::move(*memory);
}

uint64_t FakeGuest::Allocate(uint64_t length, uint64_t alignment) {
  uint64_t address = (next_free_ + alignment - 1) / alignment * alignment;
  CHECK(memory_.Contains(address, length))
      << "fake guest out of memory allocating " << length << " bytes";
  next_free_ = address + length;
  return address;
}

FakeQueue* FakeGuest::AddQueue(uint16_t size) {
  // Sizes per virtio 1.2 §2.7: table 16*n, avail 6+2n, used 6+8n.
  uint64_t desc = Allocate(16ull * size, 16);
  uint64_t avail = Allocate(6 + 2ull * size, 2);
  uint64_t used = Allocate(6 + 8ull * size, 4);
  queues_.push_back(std::make_unique<FakeQueue>(&memory_, size, desc, avail, used));
  return queues_.back().get();
}

uint64_t FakeGuest::Put(absl::string_view bytes) {
  uint64_t address = Allocate(bytes.size());
  Write(address, bytes);
  return address;
}

void FakeGuest::Write(uint64_t address, absl::string_view bytes) {
  absl::Status status = memory_.Write(address, bytes.data(), bytes.size());
  CHECK(status.ok()) << status;
}

std::string FakeGuest::Read(uint64_t address, uint64_t length) const {
  std::string bytes(length, '\0');
  absl::Status status = memory_.Read(address, bytes.data(), length);
  CHECK(status.ok()) << status;
  return bytes;
}

Buffer FakeGuest::Readable(absl::string_view bytes) {
  return Buffer{Put(bytes), static_cast<uint32_t>(bytes.size()), false};
}

Buffer FakeGuest::Writable(uint32_t length) { return Buffer{Allocate(length), length, true}; }

TestInterrupt::TestInterrupt()
    : line_(new devices::CountingInterrupt),
      interrupt_(std::unique_ptr<devices::Interrupt>(line_)) {}

ActivateContext MakeActivateContext(FakeGuest* guest, const std::vector<FakeQueue*>& queues,
                                    VirtioInterrupt* interrupt, EventLoop* event_loop,
                                    uint64_t acked_features) {
  ActivateContext context;
  context.memory = guest->memory();
  context.interrupt = interrupt;
  context.event_loop = event_loop;
  context.acked_features = acked_features;
  for (FakeQueue* fake : queues) {
    if (fake == nullptr) {
      context.queues.emplace_back();
      continue;
    }
    absl::StatusOr<Queue> queue =
        Queue::Create(fake->config(), guest->memory(), acked_features & kFeatureEventIdx,
                      acked_features & kFeatureIndirectDesc);
    CHECK(queue.ok()) << queue.status();
    context.queues.push_back(std::move(*queue));
  }
  return context;
}

FakeDriver::FakeDriver(std::shared_ptr<VirtioDevice> device, FakeGuest* guest,
                       EventLoop* event_loop)
    : event_loop_(event_loop) {
  auto line = std::make_unique<devices::CountingInterrupt>();
  line_ = line.get();
  transport_ = std::make_unique<MmioTransport>(std::move(device), guest->memory(), event_loop,
                                               std::move(line));
}

uint32_t FakeDriver::Read(uint64_t offset) {
  uint32_t value = 0;
  transport_->Read(offset, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value), 4));
  return value;
}

void FakeDriver::Write(uint64_t offset, uint32_t value) {
  transport_->Write(offset, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&value), 4));
}

VirtioState FakeDriver::SaveState() {
  absl::StatusOr<VirtioState> state = transport_->SaveState();
  CHECK(state.ok()) << state.status();
  return *std::move(state);
}

void FakeDriver::Initialize(uint64_t features, const std::vector<FakeQueue*>& queues) {
  Write(kMmioStatus, kStatusAcknowledge);
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver);
  for (uint32_t half = 0; half < 2; ++half) {
    Write(kMmioDriverFeaturesSel, half);
    Write(kMmioDriverFeatures, static_cast<uint32_t>(features >> (32 * half)));
  }
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  CHECK(Read(kMmioStatus) & kStatusFeaturesOk)
      << "features 0x" << std::hex << features << " refused";
  for (uint32_t i = 0; i < queues.size(); ++i) {
    if (queues[i] == nullptr) continue;
    const FakeQueue& queue = *queues[i];
    Write(kMmioQueueSel, i);
    Write(kMmioQueueNum, queue.size());
    Write(kMmioQueueDescLow, static_cast<uint32_t>(queue.desc_table()));
    Write(kMmioQueueDescHigh, static_cast<uint32_t>(queue.desc_table() >> 32));
    Write(kMmioQueueDriverLow, static_cast<uint32_t>(queue.avail_ring()));
    Write(kMmioQueueDriverHigh, static_cast<uint32_t>(queue.avail_ring() >> 32));
    Write(kMmioQueueDeviceLow, static_cast<uint32_t>(queue.used_ring()));
    Write(kMmioQueueDeviceHigh, static_cast<uint32_t>(queue.used_ring() >> 32));
    Write(kMmioQueueReady, 1);
  }
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  absl::Status ran = event_loop_->RunOnce(0);
  CHECK(ran.ok()) << ran;
  CHECK(transport_->device()->activated() != nullptr)
      << transport_->device()->name() << " was not activated";
}

}  // namespace hearth::virtio::testing
