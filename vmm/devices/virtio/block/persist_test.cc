// virtio-blk's snapshot state through the snapshot format: a drive's saved
// state restored into a fresh drive saves the same again.
#include "vmm/devices/virtio/block/persist.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "common/event_loop.h"
#include "gtest/gtest.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/block/block.h"
#include "vmm/devices/virtio/persist.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

namespace v1 = ::hearth::vmm::v1;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;

// A 64 KiB disk (128 sectors) in memory.
UniqueFd MakeDisk() {
  UniqueFd disk(::memfd_create("disk", MFD_CLOEXEC));
  EXPECT_TRUE(disk.valid());
  EXPECT_EQ(::ftruncate(disk.get(), 64 * 1024), 0);
  return disk;
}

std::shared_ptr<Block> MakeBlock(UniqueFd disk) {
  return *Block::Create("rootfs", std::move(disk), /*read_only=*/false,
                        *vmm::RateLimiter::Create({}));
}

TEST(BlockPersistTest, CapacityMapsToItsField) {
  v1::BlockState proto;
  BlockStateToProto(BlockState{12345}, &proto);
  EXPECT_EQ(proto.capacity(), 12345u);
  EXPECT_EQ(BlockStateFromProto(proto), BlockState{12345});
}

TEST(BlockPersistTest, SavedStateRestoresIntoAFreshDriveUnchanged) {
  FakeGuest guest;
  FakeQueue* queue = guest.AddQueue(16);
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  UniqueFd disk = MakeDisk();
  const int disk_fd = disk.get();
  std::shared_ptr<Block> block = MakeBlock(std::move(disk));
  auto driver = std::make_unique<FakeDriver>(block, &guest, loop.get());
  driver->Initialize(kFeatureVersion1, {queue});
  // A FLUSH (type 4), so the queue has moved on.
  std::string header(16, '\0');
  const uint32_t flush = 4;
  std::memcpy(header.data(), &flush, sizeof(flush));
  queue->AddChain({guest.Readable(header), guest.Writable(1)});
  driver->Kick(0);
  ASSERT_EQ(queue->TakeUsed().size(), 1u);

  v1::VirtioState saved;
  ASSERT_TRUE(SaveVirtioState(*driver->transport(), &saved).ok());
  ASSERT_TRUE(saved.has_block());
  EXPECT_EQ(saved.block().capacity(), 128u);
  EXPECT_EQ(saved.queues(0).next_used(), 1u);

  UniqueFd same_disk(::dup(disk_fd));
  driver.reset();
  block = MakeBlock(std::move(same_disk));
  driver = std::make_unique<FakeDriver>(block, &guest, loop.get());
  absl::Status restored = RestoreVirtioState(saved, driver->transport());
  ASSERT_TRUE(restored.ok()) << restored;
  v1::VirtioState again;
  ASSERT_TRUE(SaveVirtioState(*driver->transport(), &again).ok());
  EXPECT_EQ(again.SerializeAsString(), saved.SerializeAsString());
}

}  // namespace
}  // namespace hearth::virtio
