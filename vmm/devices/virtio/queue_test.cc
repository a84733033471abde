#include "vmm/devices/virtio/queue.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::Buffer;
using testing::FakeGuest;
using testing::FakeQueue;
using ::testing::HasSubstr;

constexpr uint64_t kRamSize = FakeGuest::kDefaultMemorySize;

class QueueTest : public ::testing::Test {
 protected:
  Queue Make(FakeQueue* fake, bool event_idx = false, bool indirect = false) {
    absl::StatusOr<Queue> queue =
        Queue::Create(fake->config(), guest.memory(), event_idx, indirect);
    EXPECT_TRUE(queue.ok()) << queue.status();
    return std::move(*queue);
  }
  // Pops one chain that must be malformed; returns the reason.
  std::string PopError(Queue* queue, uint16_t expected_head) {
    Queue::PopResult popped = queue->Pop();
    EXPECT_FALSE(popped.chain.has_value());
    if (!popped.error.has_value()) {
      ADD_FAILURE() << "no error";
      return "";
    }
    EXPECT_EQ(popped.error->head, expected_head);
    return popped.error->reason;
  }

  FakeGuest guest;
};

absl::Status CreateStatus(QueueConfig config, memory::GuestMemory* memory) {
  return Queue::Create(config, memory, false, false).status();
}

TEST_F(QueueTest, CreateAcceptsPowerOfTwoSizesUpTo256) {
  for (uint16_t size : {1, 2, 64, 256}) {
    FakeQueue* fake = guest.AddQueue(size);
    EXPECT_TRUE(CreateStatus(fake->config(), guest.memory()).ok()) << size;
  }
}

TEST_F(QueueTest, CreateRejectsBadSizes) {
  QueueConfig config = guest.AddQueue(256)->config();
  for (uint16_t size : {0, 3, 100, 255, 512, 1024, 32768}) {
    config.size = size;
    absl::Status status = CreateStatus(config, guest.memory());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << size;
    EXPECT_THAT(status.message(), HasSubstr("power of two")) << size;
  }
}

TEST_F(QueueTest, CreateRejectsMisalignedRings) {
  const QueueConfig good = guest.AddQueue(16)->config();
  QueueConfig config = good;
  config.desc_table += 8;
  EXPECT_THAT(CreateStatus(config, guest.memory()).message(), HasSubstr("descriptor table at 0x"));
  config = good;
  config.avail_ring += 1;
  EXPECT_THAT(CreateStatus(config, guest.memory()).message(), HasSubstr("available ring at 0x"));
  config = good;
  config.used_ring += 2;
  EXPECT_THAT(CreateStatus(config, guest.memory()).message(), HasSubstr("used ring at 0x"));
}

TEST_F(QueueTest, CreateRejectsRingsOutsideRam) {
  const QueueConfig good = guest.AddQueue(16)->config();
  struct Case {
    uint64_t QueueConfig::*field;
    uint64_t address;
    const char* name;
  };
  // Each ring ends just past the end of RAM (16 * 16 = 256 bytes of
  // descriptors; 4 + 32 + 2 bytes of avail ring; 4 + 128 + 2 of used ring),
  // or lies far beyond it, or would wrap around.
  const Case cases[] = {
      {&QueueConfig::desc_table, kRamSize - 256 + 16, "descriptor table"},
      {&QueueConfig::desc_table, 1ull << 40, "descriptor table"},
      {&QueueConfig::desc_table, 0xfffffffffffffff0ull, "descriptor table"},
      {&QueueConfig::avail_ring, kRamSize - 38 + 2, "available ring"},
      {&QueueConfig::used_ring, kRamSize - 134 + 2, "used ring"},
      {&QueueConfig::used_ring, 0xfffffffffffffffcull, "used ring"},
  };
  for (const Case& c : cases) {
    QueueConfig config = good;
    config.*c.field = c.address;
    absl::Status status = CreateStatus(config, guest.memory());
    EXPECT_THAT(status.message(), HasSubstr("outside guest RAM")) << c.name;
    EXPECT_THAT(status.message(), HasSubstr(c.name));
  }
  // Exactly at the end of RAM is fine.
  QueueConfig config = good;
  config.desc_table = kRamSize - 256;
  config.avail_ring = kRamSize - 1024;  // 38 bytes, 2-aligned
  config.used_ring = kRamSize - 512;    // 134 bytes, 4-aligned
  EXPECT_TRUE(CreateStatus(config, guest.memory()).ok());
}

TEST_F(QueueTest, PopOfEmptyQueueReturnsNothing) {
  Queue queue = Make(guest.AddQueue(16));
  EXPECT_FALSE(queue.HasAvailable());
  Queue::PopResult popped = queue.Pop();
  EXPECT_FALSE(popped.chain.has_value());
  EXPECT_FALSE(popped.error.has_value());
  EXPECT_EQ(queue.next_avail(), 0);
}

TEST_F(QueueTest, PopsChainsInOrderWithTheirDescriptors) {
  FakeQueue* fake = guest.AddQueue(16);
  Queue queue = Make(fake);
  Buffer header = guest.Readable("0123456789abcdef");
  Buffer data = guest.Readable(std::string(100, 'x'));
  Buffer out = guest.Writable(513);
  uint16_t first = fake->AddChain({header, data, out});
  uint16_t second = fake->AddChain({guest.Writable(7)});
  EXPECT_TRUE(queue.HasAvailable());

  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  const DescriptorChain& chain = *popped.chain;
  EXPECT_EQ(chain.head, first);
  ASSERT_EQ(chain.descriptors.size(), 3u);
  EXPECT_EQ(chain.descriptors[0].address, header.address);
  EXPECT_EQ(chain.descriptors[0].length, 16u);
  EXPECT_FALSE(chain.descriptors[0].writable);
  EXPECT_EQ(chain.descriptors[1].address, data.address);
  EXPECT_EQ(chain.descriptors[2].address, out.address);
  EXPECT_TRUE(chain.descriptors[2].writable);
  EXPECT_EQ(chain.readable_bytes, 116u);
  EXPECT_EQ(chain.writable_bytes, 513u);

  popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->head, second);
  EXPECT_EQ(popped.chain->readable_bytes, 0u);
  EXPECT_EQ(popped.chain->writable_bytes, 7u);
  EXPECT_FALSE(queue.Pop().chain.has_value());
  EXPECT_EQ(queue.next_avail(), 2);
  EXPECT_FALSE(queue.HasAvailable());
}

TEST_F(QueueTest, ZeroLengthDescriptorsAreAllowed) {
  FakeQueue* fake = guest.AddQueue(4);
  Queue queue = Make(fake);
  fake->AddChain({Buffer{0x20000, 0, false}, guest.Writable(1)});
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->readable_bytes, 0u);
  EXPECT_EQ(popped.chain->descriptors.size(), 2u);
}

TEST_F(QueueTest, HeadIndexBeyondQueueSizeIsAnErrorAndIsConsumed) {
  FakeQueue* fake = guest.AddQueue(16);
  Queue queue = Make(fake);
  fake->Publish(300);
  fake->AddChain({guest.Writable(4)});
  EXPECT_THAT(PopError(&queue, 300), HasSubstr("descriptor index 300 >= queue size 16"));
  // The bad chain is consumed; the next one is fine.
  EXPECT_TRUE(queue.Pop().chain.has_value());
}

TEST_F(QueueTest, NextIndexBeyondQueueSizeIsAnError) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake);
  fake->WriteDescriptor(0, 0x20000, 8, kVirtqDescFNext, 8);
  fake->Publish(0);
  EXPECT_THAT(PopError(&queue, 0), HasSubstr("index 8 >= queue size 8"));
}

TEST_F(QueueTest, LoopingChainsAreErrors) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake);
  fake->WriteDescriptor(3, 0x20000, 8, kVirtqDescFNext, 3);  // self loop
  fake->Publish(3);
  EXPECT_THAT(PopError(&queue, 3), HasSubstr("loops or exceeds the queue size"));

  fake->WriteDescriptor(0, 0x20000, 8, kVirtqDescFNext, 1);
  fake->WriteDescriptor(1, 0x20000, 8, kVirtqDescFNext, 2);
  fake->WriteDescriptor(2, 0x20000, 8, kVirtqDescFNext, 0);
  fake->Publish(1);
  EXPECT_THAT(PopError(&queue, 1), HasSubstr("loops or exceeds the queue size"));
}

TEST_F(QueueTest, ChainOfExactlyQueueSizeIsFineOneMoreIsNot) {
  FakeQueue* fake = guest.AddQueue(4);
  Queue queue = Make(fake);
  for (uint16_t i = 0; i < 4; ++i) {
    fake->WriteDescriptor(i, 0x20000 + 16 * i, 16, i < 3 ? kVirtqDescFNext : 0, i + 1);
  }
  fake->Publish(0);
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value()) << popped.error->reason;
  EXPECT_EQ(popped.chain->descriptors.size(), 4u);
  EXPECT_EQ(popped.chain->readable_bytes, 64u);

  // The last one now points back at the first: a fifth descriptor.
  fake->WriteDescriptor(3, 0x20000, 16, kVirtqDescFNext, 0);
  fake->Publish(0);
  EXPECT_THAT(PopError(&queue, 0), HasSubstr("exceeds the queue size"));
}

TEST_F(QueueTest, ReadableAfterWritableIsAnError) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake);
  uint16_t head = fake->AddChain({guest.Writable(4), guest.Readable("abcd")});
  EXPECT_THAT(PopError(&queue, head), HasSubstr("device-readable descriptor after"));
}

TEST_F(QueueTest, BuffersOutsideRamAreErrors) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake);
  const Buffer bad[] = {
      {kRamSize - 4, 8, false},               // straddles the end
      {kRamSize, 1, true},                    // just past it
      {1ull << 40, 1, false},                 // far away
      {0xfffffffffffff000ull, 0x2000, true},  // address + length wraps
      {0x1000, 0xffffffffu, false},           // 4 GiB from a valid address
  };
  for (const Buffer& buffer : bad) {
    uint16_t head = fake->AddChain({buffer});
    EXPECT_THAT(PopError(&queue, head), HasSubstr("outside guest RAM"))
        << std::hex << buffer.address << " +" << buffer.length;
  }
  // The last byte of RAM is inside.
  fake->AddChain({Buffer{kRamSize - 1, 1, true}});
  EXPECT_TRUE(queue.Pop().chain.has_value());
}

TEST_F(QueueTest, IndirectChainIsFlattened) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake, false, /*indirect=*/true);
  uint64_t table = guest.Allocate(16 * 3);
  Buffer a = guest.Readable("header..");
  Buffer b = guest.Readable("payload");
  Buffer c = guest.Writable(1);
  uint16_t head = fake->AddIndirectChain({a, b, c}, table);
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value()) << popped.error->reason;
  EXPECT_EQ(popped.chain->head, head);
  ASSERT_EQ(popped.chain->descriptors.size(), 3u);
  EXPECT_EQ(popped.chain->descriptors[1].address, b.address);
  EXPECT_EQ(popped.chain->readable_bytes, 15u);
  EXPECT_EQ(popped.chain->writable_bytes, 1u);
}

TEST_F(QueueTest, DirectDescriptorsMayPrecedeAnIndirectTable) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake, false, true);
  Buffer header = guest.Readable("hdr");
  uint64_t table = guest.Allocate(32);
  Buffer out = guest.Writable(9);
  fake->WriteDescriptorAt(table, out.address, out.length, kVirtqDescFWrite, 0);
  fake->WriteDescriptor(5, header.address, header.length, kVirtqDescFNext, 6);
  fake->WriteDescriptor(6, table, 16, kVirtqDescFIndirect, 0);
  fake->Publish(5);
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value()) << popped.error->reason;
  EXPECT_EQ(popped.chain->descriptors.size(), 2u);
  EXPECT_EQ(popped.chain->readable_bytes, 3u);
  EXPECT_EQ(popped.chain->writable_bytes, 9u);
}

TEST_F(QueueTest, IndirectWithoutTheFeatureIsAnError) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake, false, /*indirect=*/false);
  uint16_t head = fake->AddIndirectChain({guest.Writable(4)}, guest.Allocate(16));
  EXPECT_THAT(PopError(&queue, head), HasSubstr("VIRTIO_F_INDIRECT_DESC was not negotiated"));
}

class IndirectErrorTest : public QueueTest {
 protected:
  // Publishes descriptor 0 as an indirect one with `flags` added.
  std::string PublishIndirect(uint64_t table, uint32_t length, uint16_t flags = 0) {
    FakeQueue* fake = guest.AddQueue(8);
    Queue queue = Make(fake, false, true);
    fake->WriteDescriptor(0, table, length, kVirtqDescFIndirect | flags, 1);
    fake->WriteDescriptor(1, 0x20000, 4, kVirtqDescFWrite, 0);
    fake->Publish(0);
    return PopError(&queue, 0);
  }
};

TEST_F(IndirectErrorTest, IndirectWithNextIsAnError) {
  uint64_t table = guest.Allocate(16);
  EXPECT_THAT(PublishIndirect(table, 16, kVirtqDescFNext),
              HasSubstr("indirect descriptor also has NEXT set"));
}

TEST_F(IndirectErrorTest, BadIndirectLengthsAreErrors) {
  uint64_t table = guest.Allocate(16 * 16);
  for (uint32_t length : {0u, 8u, 17u, 16u * 9, 0xfffffff0u}) {
    EXPECT_THAT(PublishIndirect(table, length),
                HasSubstr("is not a non-zero multiple of 16 within the queue size"))
        << length;
  }
}

TEST_F(IndirectErrorTest, IndirectTableOutsideRamIsAnError) {
  EXPECT_THAT(PublishIndirect(kRamSize - 16, 32), HasSubstr("indirect table is outside guest RAM"));
  EXPECT_THAT(PublishIndirect(0xfffffffffffffff0ull, 32),
              HasSubstr("indirect table is outside guest RAM"));
}

TEST_F(IndirectErrorTest, NestedIndirectIsAnError) {
  uint64_t table = guest.Allocate(32);
  guest.WriteDescriptorAt(table, 0x20000, 4, kVirtqDescFNext, 1);
  guest.WriteDescriptorAt(table + 16, table, 16, kVirtqDescFIndirect, 0);
  EXPECT_THAT(PublishIndirect(table, 32), HasSubstr("nested indirect descriptor"));
}

TEST_F(IndirectErrorTest, LoopInsideIndirectTableIsAnError) {
  uint64_t table = guest.Allocate(48);
  guest.WriteDescriptorAt(table, 0x20000, 4, kVirtqDescFNext, 1);
  guest.WriteDescriptorAt(table + 16, 0x20000, 4, kVirtqDescFNext, 2);
  guest.WriteDescriptorAt(table + 32, 0x20000, 4, kVirtqDescFNext, 0);
  EXPECT_THAT(PublishIndirect(table, 48), HasSubstr("indirect chain loops"));
}

TEST_F(IndirectErrorTest, NextBeyondIndirectTableIsAnError) {
  uint64_t table = guest.Allocate(32);
  guest.WriteDescriptorAt(table, 0x20000, 4, kVirtqDescFNext, 2);  // 2 entries
  EXPECT_THAT(PublishIndirect(table, 32), HasSubstr("indirect descriptor index 2 >= table size 2"));
}

TEST_F(IndirectErrorTest, BuffersInsideIndirectTablesAreChecked) {
  uint64_t table = guest.Allocate(32);
  guest.WriteDescriptorAt(table, kRamSize - 2, 4, 0, 0);
  EXPECT_THAT(PublishIndirect(table, 16), HasSubstr("outside guest RAM"));
  guest.WriteDescriptorAt(table, 0x20000, 4, kVirtqDescFWrite | kVirtqDescFNext, 1);
  guest.WriteDescriptorAt(table + 16, 0x20000, 4, 0, 0);
  EXPECT_THAT(PublishIndirect(table, 32), HasSubstr("device-readable descriptor after"));
}

TEST_F(QueueTest, ChainsMovingMoreThan4GiBAreErrors) {
  // 1 direct + 256 indirect descriptors, each covering all 16 MiB of RAM:
  // 257 * 16 MiB > 4 GiB.
  FakeQueue* fake = guest.AddQueue(256);
  Queue queue = Make(fake, false, true);
  uint64_t table = guest.Allocate(16 * 256);
  for (uint16_t i = 0; i < 256; ++i) {
    const bool last = i == 255;
    guest.WriteDescriptorAt(table + 16 * i, 0, kRamSize,
                            kVirtqDescFWrite | (last ? 0 : kVirtqDescFNext), last ? 0 : i + 1);
  }
  fake->WriteDescriptor(0, 0, kRamSize, kVirtqDescFNext, 1);
  fake->WriteDescriptor(1, table, 16 * 256, kVirtqDescFIndirect, 0);
  fake->Publish(0);
  EXPECT_THAT(PopError(&queue, 0), HasSubstr("more than 4 GiB"));

  // 256 of them (exactly 4 GiB) are accepted.
  fake->Publish(1);
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value()) << popped.error->reason;
  EXPECT_EQ(popped.chain->writable_bytes, 256 * kRamSize);
}

TEST_F(QueueTest, AvailIndexJumpingAheadBreaksTheQueue) {
  FakeQueue* fake = guest.AddQueue(16);
  Queue queue = Make(fake);
  fake->AddChain({guest.Writable(4)});
  ASSERT_TRUE(queue.Pop().chain.has_value());
  fake->SetAvailIdx(1 + 17);  // 17 ahead of a 16-entry ring
  Queue::PopResult popped = queue.Pop();
  EXPECT_FALSE(popped.chain.has_value());
  ASSERT_TRUE(popped.error.has_value());
  EXPECT_EQ(popped.error->head, 0xffff);
  EXPECT_THAT(popped.error->reason, HasSubstr("queue disabled until reset"));
  EXPECT_TRUE(queue.broken());

  // Even a sane index does not revive it.
  fake->SetAvailIdx(2);
  EXPECT_FALSE(queue.HasAvailable());
  popped = queue.Pop();
  EXPECT_FALSE(popped.chain.has_value());
  EXPECT_FALSE(popped.error.has_value());
  EXPECT_EQ(queue.next_avail(), 1);
}

TEST_F(QueueTest, AvailIndexExactlyQueueSizeAheadIsFine) {
  FakeQueue* fake = guest.AddQueue(4);
  Queue queue = Make(fake);
  for (int i = 0; i < 4; ++i) fake->AddChain({guest.Writable(4)});
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(queue.Pop().chain.has_value()) << i;
  EXPECT_FALSE(queue.broken());
}

TEST_F(QueueTest, UndoReturnsTheSameChainAgain) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake);
  uint16_t first = fake->AddChain({guest.Writable(4)});
  fake->AddChain({guest.Writable(8)});
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->head, first);
  queue.Undo();
  EXPECT_EQ(queue.next_avail(), 0);
  popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->head, first);
  EXPECT_EQ(popped.chain->writable_bytes, 4u);
}

TEST_F(QueueTest, AddUsedWritesElementAndIndex) {
  FakeQueue* fake = guest.AddQueue(4);
  Queue queue = Make(fake);
  queue.AddUsed(3, 1234);
  queue.AddUsed(1, 0);
  EXPECT_EQ(fake->used_idx(), 2);
  EXPECT_EQ(queue.next_used(), 2);
  std::vector<testing::UsedElement> used = fake->TakeUsed();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].id, 3u);
  EXPECT_EQ(used[0].length, 1234u);
  EXPECT_EQ(used[1].id, 1u);
  EXPECT_EQ(used[1].length, 0u);
}

TEST_F(QueueTest, IndicesWrapAround65535) {
  FakeQueue* fake = guest.AddQueue(4);
  Queue queue = Make(fake);
  queue.SetIndices(65535, 65535);
  EXPECT_EQ(queue.next_avail(), 65535);
  EXPECT_EQ(queue.next_used(), 65535);
  fake->SetAvailIdx(65535);
  // The driver's ring slot for avail index 65535 is 65535 % 4 = 3.
  fake->WriteDescriptor(2, 0x20000, 4, kVirtqDescFWrite, 0);
  fake->Publish(2);  // avail idx wraps to 0
  EXPECT_EQ(fake->avail_idx(), 0);
  fake->WriteDescriptor(1, 0x20000, 8, kVirtqDescFWrite, 0);
  fake->Publish(1);
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->head, 2);
  EXPECT_EQ(queue.next_avail(), 0);
  popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->head, 1);

  queue.AddUsed(2, 4);
  EXPECT_EQ(fake->used_idx(), 0);
  EXPECT_EQ(fake->used(65535).id, 2u);  // slot 3
  queue.AddUsed(1, 8);
  EXPECT_EQ(fake->used_idx(), 1);
  EXPECT_EQ(fake->used(0).id, 1u);
  EXPECT_EQ(fake->used(0).length, 8u);
}

TEST_F(QueueTest, NeedsInterruptHonoursNoInterruptFlagWithoutEventIdx) {
  FakeQueue* fake = guest.AddQueue(4);
  Queue queue = Make(fake);
  queue.AddUsed(0, 0);
  EXPECT_TRUE(queue.NeedsInterrupt());
  fake->SetNoInterrupt(true);
  queue.AddUsed(0, 0);
  EXPECT_FALSE(queue.NeedsInterrupt());
  fake->SetNoInterrupt(false);
  EXPECT_TRUE(queue.NeedsInterrupt());
  // used_event is ignored without EVENT_IDX.
  fake->SetUsedEvent(100);
  EXPECT_TRUE(queue.NeedsInterrupt());
}

TEST_F(QueueTest, NeedsInterruptFollowsUsedEventWithEventIdx) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake, /*event_idx=*/true);
  // used_event 0: interrupt when used idx moves past 0.
  fake->SetUsedEvent(0);
  queue.AddUsed(0, 0);  // used idx 1
  EXPECT_TRUE(queue.NeedsInterrupt());
  EXPECT_FALSE(queue.NeedsInterrupt());  // nothing new since

  // used_event 2: no interrupt at used idx 2, one at 3.
  fake->SetUsedEvent(2);
  queue.AddUsed(0, 0);  // 2
  EXPECT_FALSE(queue.NeedsInterrupt());
  queue.AddUsed(0, 0);  // 3
  EXPECT_TRUE(queue.NeedsInterrupt());

  // Several published at once: one interrupt if the event index was
  // crossed anywhere in the batch.
  fake->SetUsedEvent(4);
  for (int i = 0; i < 3; ++i) queue.AddUsed(0, 0);  // 6
  EXPECT_TRUE(queue.NeedsInterrupt());
  fake->SetUsedEvent(100);
  for (int i = 0; i < 3; ++i) queue.AddUsed(0, 0);  // 9
  EXPECT_FALSE(queue.NeedsInterrupt());

  // The NO_INTERRUPT flag is ignored with EVENT_IDX.
  fake->SetNoInterrupt(true);
  fake->SetUsedEvent(9);
  queue.AddUsed(0, 0);  // 10
  EXPECT_TRUE(queue.NeedsInterrupt());
}

TEST_F(QueueTest, NeedsInterruptEventIdxMathWrapsAround) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake, true);
  queue.SetIndices(0, 65534);
  fake->SetUsedEvent(65535);
  queue.AddUsed(0, 0);  // 65535: event not yet passed
  EXPECT_FALSE(queue.NeedsInterrupt());
  queue.AddUsed(0, 0);  // 0: passed 65535
  EXPECT_TRUE(queue.NeedsInterrupt());
}

TEST_F(QueueTest, PopWritesAvailEventWithEventIdx) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue with = Make(fake, /*event_idx=*/true);
  fake->AddChain({guest.Writable(4)});
  fake->AddChain({guest.Writable(4)});
  EXPECT_EQ(fake->avail_event(), 0);
  ASSERT_TRUE(with.Pop().chain.has_value());
  EXPECT_EQ(fake->avail_event(), 1);
  ASSERT_TRUE(with.Pop().chain.has_value());
  EXPECT_EQ(fake->avail_event(), 2);

  FakeQueue* other = guest.AddQueue(8);
  Queue without = Make(other, false);
  other->AddChain({guest.Writable(4)});
  ASSERT_TRUE(without.Pop().chain.has_value());
  EXPECT_EQ(other->avail_event(), 0);
}

TEST_F(QueueTest, SetIndicesResumesFromTheGivenPositions) {
  FakeQueue* fake = guest.AddQueue(8);
  Queue queue = Make(fake);
  for (int i = 0; i < 5; ++i) fake->AddChain({guest.Writable(10 + i)});
  queue.SetIndices(3, 3);
  Queue::PopResult popped = queue.Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->writable_bytes, 13u);
  queue.AddUsed(popped.chain->head, 13);
  EXPECT_EQ(fake->used_idx(), 4);
  EXPECT_EQ(fake->used(3).id, popped.chain->head);
}

}  // namespace
}  // namespace hearth::virtio
