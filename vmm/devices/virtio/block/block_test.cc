#include "vmm/devices/virtio/block/block.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <variant>

#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::Buffer;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;
using testing::TestInterrupt;
using testing::UsedElement;

constexpr uint64_t kFeatures = kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc;

std::string Header(uint32_t type, uint64_t sector) {
  std::string header(16, '\0');
  std::memcpy(header.data(), &type, 4);
  std::memcpy(header.data() + 8, &sector, 8);
  return header;
}

// A file of `size` bytes, each byte its offset's low 8 bits xor the sector.
UniqueFd MakeDisk(uint64_t size) {
  const char* dir = getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/disk-XXXXXX";
  int fd = ::mkstemp(path.data());
  EXPECT_GE(fd, 0);
  ::unlink(path.c_str());
  std::string bytes(size, '\0');
  for (uint64_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i ^ (i / 512));
  EXPECT_EQ(::pwrite(fd, bytes.data(), size, 0), static_cast<ssize_t>(size));
  return UniqueFd(fd);
}

std::string FileBytes(int fd, uint64_t offset, size_t length) {
  std::string bytes(length, '\0');
  EXPECT_EQ(::pread(fd, bytes.data(), length, static_cast<off_t>(offset)),
            static_cast<ssize_t>(length));
  return bytes;
}

std::unique_ptr<vmm::RateLimiter> Unlimited() { return *vmm::RateLimiter::Create({}); }

class BlockTest : public ::testing::Test {
 protected:
  void Start(bool read_only = false, std::unique_ptr<vmm::RateLimiter> limiter = Unlimited()) {
    UniqueFd disk = MakeDisk(64 * 1024);
    disk_fd = disk.get();
    absl::StatusOr<std::shared_ptr<Block>> created =
        Block::Create("rootfs", std::move(disk), read_only, std::move(limiter));
    ASSERT_TRUE(created.ok()) << created.status();
    block = *created;
    ASSERT_TRUE(block
                    ->Activate(testing::MakeActivateContext(&guest, {queue}, interrupt.get(),
                                                            loop.get(), kFeatures))
                    .ok());
  }
  // The drive behind a virtio-mmio transport, brought up by the fake
  // driver (snapshots save and restore the transport with the device).
  void StartBehindTransport(uint64_t disk_size = 64 * 1024) {
    UniqueFd disk = MakeDisk(disk_size);
    disk_fd = disk.get();
    block = *Block::Create("rootfs", std::move(disk), false, Unlimited());
    driver = std::make_unique<FakeDriver>(block, &guest, loop.get());
    driver->Initialize(kFeatures, {queue});
  }
  // Drops the running drive, as the snapshotted VMM exits, and builds a
  // fresh one over a disk of `disk_size` bytes (the same file if 0).
  void ReplaceDrive(uint64_t disk_size = 0) {
    UniqueFd disk = disk_size == 0 ? UniqueFd(::dup(disk_fd)) : MakeDisk(disk_size);
    driver.reset();
    block.reset();
    disk_fd = disk.get();
    block = *Block::Create("rootfs", std::move(disk), false, Unlimited());
    driver = std::make_unique<FakeDriver>(block, &guest, loop.get());
  }

  // A request: header, data buffers, and a separate status byte.
  struct Request {
    uint16_t head;
    Buffer status;
  };
  Request Submit(uint32_t type, uint64_t sector, std::vector<Buffer> data) {
    std::vector<Buffer> buffers = {guest.Readable(Header(type, sector))};
    buffers.insert(buffers.end(), data.begin(), data.end());
    Buffer status = guest.Writable(1);
    guest.Write(status.address, "\xff");
    buffers.push_back(status);
    return Request{queue->AddChain(buffers), status};
  }
  uint8_t StatusOf(const Request& request) {
    return static_cast<uint8_t>(guest.Read(request.status.address, 1)[0]);
  }
  // Completes what was submitted; returns the used elements.
  std::vector<UsedElement> Kick() {
    block->ProcessQueue(0);
    return queue->TakeUsed();
  }

  FakeGuest guest;
  FakeQueue* queue = guest.AddQueue(16);
  TestInterrupt interrupt;
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  std::shared_ptr<Block> block;
  std::unique_ptr<FakeDriver> driver;
  int disk_fd = -1;
};

TEST_F(BlockTest, CapacityAndFeaturesComeFromTheFile) {
  UniqueFd disk = MakeDisk(64 * 1024 + 100);  // a partial last sector is not offered
  auto created = Block::Create("data", std::move(disk), /*read_only=*/true, Unlimited());
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ((*created)->capacity(), 128u);
  uint8_t config[16];
  (*created)->ReadConfig(0, absl::MakeSpan(config));
  uint64_t capacity;
  uint32_t seg_max;
  std::memcpy(&capacity, config, 8);
  std::memcpy(&seg_max, config + 12, 4);
  EXPECT_EQ(capacity, 128u);
  EXPECT_EQ(seg_max, 254u);
  EXPECT_EQ((*created)->features() & kBlkFRo, kBlkFRo);
  EXPECT_EQ((*created)->features() & kBlkFFlush, kBlkFFlush);
  EXPECT_EQ((*created)->features() & kFeatureVersion1, kFeatureVersion1);
  EXPECT_EQ((*created)->name(), "block data");

  auto writable = Block::Create("rw", MakeDisk(512), false, Unlimited());
  ASSERT_TRUE(writable.ok());
  EXPECT_EQ((*writable)->features() & kBlkFRo, 0u);
}

TEST_F(BlockTest, CreateRejectsBackingsThatAreNotFilesOrBlockDevices) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  UniqueFd write_end(pipe_fds[1]);
  auto created = Block::Create("p", UniqueFd(pipe_fds[0]), false, Unlimited());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  auto directory =
      Block::Create("d", UniqueFd(::open("/", O_RDONLY | O_DIRECTORY)), false, Unlimited());
  EXPECT_FALSE(directory.ok());
}

TEST_F(BlockTest, ReadsIntoScatteredBuffers) {
  Start();
  Buffer a = guest.Writable(100);
  Buffer b = guest.Writable(924);
  Request request = Submit(kBlkTIn, 3, {a, b});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, request.head);
  EXPECT_EQ(used[0].length, 1025u);  // data + status
  EXPECT_EQ(StatusOf(request), kBlkSOk);
  EXPECT_EQ(guest.Read(a.address, 100) + guest.Read(b.address, 924),
            FileBytes(disk_fd, 3 * 512, 1024));
  EXPECT_EQ(block->metrics().requests.Get(), 1u);
  EXPECT_EQ(block->metrics().read_bytes.Get(), 1024u);
  EXPECT_EQ(interrupt.count(), 1u);
  EXPECT_EQ(interrupt.status(), VirtioInterrupt::kUsedBuffer);
}

TEST_F(BlockTest, WritesReachTheFile) {
  Start();
  std::string data = std::string(512, 'A') + std::string(512, 'B');
  Request request =
      Submit(kBlkTOut, 10, {guest.Readable(data.substr(0, 700)), guest.Readable(data.substr(700))});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].length, 1u);  // only the status byte was written
  EXPECT_EQ(StatusOf(request), kBlkSOk);
  EXPECT_EQ(FileBytes(disk_fd, 10 * 512, 1024), data);
  EXPECT_EQ(block->metrics().write_bytes.Get(), 1024u);
  // Neighbouring sectors are untouched.
  std::string before = FileBytes(disk_fd, 9 * 512, 512);
  EXPECT_EQ(static_cast<uint8_t>(before[1]), static_cast<uint8_t>((9 * 512 + 1) ^ 9));
}

// Adjacent reads and writes queued together are merged into one transfer
// each; every request still gets its own data, length and status.
TEST_F(BlockTest, AdjacentRequestsQueuedTogetherAreServedExactly) {
  Start();  // a 16-entry ring: 5 requests of 3 descriptors
  std::vector<Request> reads;
  std::vector<Buffer> buffers;
  for (int i = 0; i < 2; ++i) {
    buffers.push_back(guest.Writable(512));
    reads.push_back(Submit(kBlkTIn, 20 + i, {buffers.back()}));  // sectors 20, 21
  }
  std::string data(512, 'w');
  Request write = Submit(kBlkTOut, 22, {guest.Readable(data)});
  Buffer after = guest.Writable(512);
  Request read_back = Submit(kBlkTIn, 22, {after});  // after the write, in order
  Buffer far = guest.Writable(512);
  Request elsewhere = Submit(kBlkTIn, 3, {far});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 5u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(StatusOf(reads[i]), kBlkSOk) << i;
    EXPECT_EQ(guest.Read(buffers[i].address, 512), FileBytes(disk_fd, (20 + i) * 512, 512)) << i;
    EXPECT_EQ(used[i].length, 513u) << i;
  }
  EXPECT_EQ(StatusOf(write), kBlkSOk);
  EXPECT_EQ(FileBytes(disk_fd, 22 * 512, 512), data);
  EXPECT_EQ(StatusOf(read_back), kBlkSOk);
  EXPECT_EQ(guest.Read(after.address, 512), data);
  EXPECT_EQ(guest.Read(far.address, 512), FileBytes(disk_fd, 3 * 512, 512));
  EXPECT_EQ(StatusOf(elsewhere), kBlkSOk);
  EXPECT_EQ(block->metrics().requests.Get(), 5u);
  EXPECT_EQ(block->metrics().read_bytes.Get(), 4u * 512);
}

// A merged run in which one request cannot be served: the others still
// succeed, each with its own status.
TEST_F(BlockTest, AFailingRequestInAMergedRunFailsAlone) {
  Start();
  Buffer first = guest.Writable(512);
  Request good = Submit(kBlkTIn, 126, {first});                   // the disk's last two sectors
  Request beyond = Submit(kBlkTIn, 127, {guest.Writable(1024)});  // runs past the end
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(StatusOf(good), kBlkSOk);
  EXPECT_EQ(guest.Read(first.address, 512), FileBytes(disk_fd, 126 * 512, 512));
  EXPECT_EQ(StatusOf(beyond), kBlkSIoErr);
}

TEST_F(BlockTest, FlushAndGetId) {
  Start();
  Request flush = Submit(kBlkTFlush, 0, {});
  Buffer id = guest.Writable(20);
  Request get_id = Submit(kBlkTGetId, 0, {id});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].length, 1u);
  EXPECT_EQ(StatusOf(flush), kBlkSOk);
  EXPECT_EQ(used[1].length, 21u);
  EXPECT_EQ(StatusOf(get_id), kBlkSOk);
  EXPECT_EQ(guest.Read(id.address, 20), std::string("rootfs") + std::string(14, '\0'));
  EXPECT_EQ(block->metrics().requests.Get(), 2u);
}

TEST_F(BlockTest, BadRequestsGetAnErrorStatus) {
  Start();
  Request unaligned = Submit(kBlkTIn, 0, {guest.Writable(100)});
  Request beyond = Submit(kBlkTIn, 127, {guest.Writable(1024)});
  Request unknown = Submit(99, 0, {});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 3u);
  for (const UsedElement& u : used) EXPECT_EQ(u.length, 1u);
  EXPECT_EQ(StatusOf(unaligned), kBlkSIoErr);
  EXPECT_EQ(StatusOf(beyond), kBlkSIoErr);
  EXPECT_EQ(StatusOf(unknown), kBlkSUnsupp);
  EXPECT_EQ(block->metrics().errors.Get(), 3u);
  EXPECT_EQ(block->metrics().requests.Get(), 0u);
  EXPECT_EQ(block->metrics().read_bytes.Get(), 0u);
}

TEST_F(BlockTest, ReadOnlyDrivesRefuseWrites) {
  Start(/*read_only=*/true);
  std::string before = FileBytes(disk_fd, 0, 512);
  Request write = Submit(kBlkTOut, 0, {guest.Readable(std::string(512, 'x'))});
  Request read = Submit(kBlkTIn, 0, {guest.Writable(512)});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(StatusOf(write), kBlkSIoErr);
  EXPECT_EQ(StatusOf(read), kBlkSOk);
  EXPECT_EQ(FileBytes(disk_fd, 0, 512), before);
}

TEST_F(BlockTest, ChainsWithoutStatusByteOrMalformedAreCompletedEmpty) {
  Start();
  uint16_t no_status = queue->AddChain({guest.Readable(Header(kBlkTIn, 0))});
  queue->Publish(200);  // a head beyond the queue size
  Request good = Submit(kBlkTFlush, 0, {});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 3u);
  EXPECT_EQ(used[0].id, no_status);
  EXPECT_EQ(used[0].length, 0u);
  EXPECT_EQ(used[1].id, 200u);
  EXPECT_EQ(used[1].length, 0u);
  EXPECT_EQ(StatusOf(good), kBlkSOk);
  EXPECT_EQ(block->metrics().invalid_chains.Get(), 2u);
}

TEST_F(BlockTest, RequestsAlreadyQueuedAreServedOnActivation) {
  Request early = Submit(kBlkTFlush, 0, {});
  Start();
  EXPECT_EQ(StatusOf(early), kBlkSOk);
  EXPECT_EQ(queue->used_idx(), 1);
}

TEST_F(BlockTest, UpdateBackingChangesCapacityAndRaisesConfigChange) {
  Start();
  EXPECT_EQ(block->capacity(), 128u);
  EXPECT_EQ(block->config_generation(), 0u);
  ASSERT_TRUE(block->UpdateBacking(MakeDisk(1024 * 1024)).ok());
  EXPECT_EQ(block->capacity(), 2048u);
  EXPECT_EQ(block->config_generation(), 1u);
  EXPECT_EQ(interrupt.status(), VirtioInterrupt::kConfigChange);
  EXPECT_EQ(interrupt.count(), 1u);
  // Requests now see the new disk.
  Request request = Submit(kBlkTIn, 2000, {guest.Writable(512)});
  Kick();
  EXPECT_EQ(StatusOf(request), kBlkSOk);

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  UniqueFd write_end(pipe_fds[1]);
  EXPECT_FALSE(block->UpdateBacking(UniqueFd(pipe_fds[0])).ok());
  EXPECT_EQ(block->capacity(), 2048u);
  EXPECT_EQ(block->config_generation(), 1u);
}

TEST_F(BlockTest, RateLimiterLeavesRequestsQueuedUntilItsTimerFires) {
  // One request per second, and a clock that only moves when told.
  auto now = std::make_shared<int64_t>(0);
  vmm::RateLimiterConfig config;
  config.ops = {1, 0, 1000};
  auto limiter = *vmm::RateLimiter::Create(config, [now] { return *now; });
  Start(false, std::move(limiter));
  Request first = Submit(kBlkTFlush, 0, {});
  Request second = Submit(kBlkTFlush, 0, {});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, first.head);
  EXPECT_EQ(StatusOf(second), 0xff);  // untouched, still in the ring
  EXPECT_EQ(block->metrics().throttled.Get(), 1u);
  // Another kick while blocked changes nothing.
  EXPECT_TRUE(Kick().empty());

  *now += 1'000'000'000;  // a token has been earned
  // The limiter's retry timer (100 ms) brings the device back.
  for (int i = 0; i < 20 && queue->used_idx() < 2; ++i) {
    ASSERT_TRUE(loop->RunOnce(100).ok());
  }
  used = queue->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, second.head);
  EXPECT_EQ(StatusOf(second), kBlkSOk);
}

TEST_F(BlockTest, ResetStopsProcessing) {
  Start();
  block->Reset();
  Submit(kBlkTFlush, 0, {});
  EXPECT_TRUE(Kick().empty());
}

TEST_F(BlockTest, SnapshotRecordsTheCapacity) {
  StartBehindTransport();
  VirtioState state = driver->SaveState();
  EXPECT_EQ(state.device_type, kDeviceBlock);
  ASSERT_TRUE(std::holds_alternative<BlockState>(state.device));
  EXPECT_EQ(std::get<BlockState>(state.device).capacity, 128u);
}

TEST_F(BlockTest, RestoreRefusesADriveOfAnotherSize) {
  StartBehindTransport();
  VirtioState state = driver->SaveState();
  ReplaceDrive(/*disk_size=*/128 * 1024);
  absl::Status restored = driver->transport()->RestoreState(state);
  EXPECT_EQ(restored.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(restored.message().find("256 sectors"), absl::string_view::npos) << restored;
  EXPECT_NE(restored.message().find("had 128"), absl::string_view::npos) << restored;
  EXPECT_EQ(block->activated(), nullptr);
}

TEST_F(BlockTest, RestoredDriveServesARequestMadeAvailableBeforeTheSave) {
  StartBehindTransport();
  Request first = Submit(kBlkTIn, 1, {guest.Writable(512)});
  driver->Kick(0);
  ASSERT_EQ(queue->TakeUsed().size(), 1u);
  // The guest publishes a request, but the VMM pauses before the kick.
  Buffer data = guest.Writable(512);
  Request second = Submit(kBlkTIn, 2, {data});
  VirtioState state = driver->SaveState();
  EXPECT_EQ(state.queues[0].next_avail, 1u);
  ReplaceDrive();

  absl::Status restored = driver->transport()->RestoreState(state);
  ASSERT_TRUE(restored.ok()) << restored;
  std::vector<UsedElement> used = queue->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, second.head);
  EXPECT_EQ(used[0].length, 513u);
  EXPECT_EQ(queue->used(1).id, second.head);
  EXPECT_EQ(StatusOf(second), kBlkSOk);
  EXPECT_EQ(guest.Read(data.address, 512), FileBytes(disk_fd, 2 * 512, 512));
  EXPECT_EQ(StatusOf(first), kBlkSOk);
  EXPECT_EQ(block->metrics().requests.Get(), 1u);  // the restored drive's own
  EXPECT_EQ(driver->Read(kMmioInterruptStatus), VirtioInterrupt::kUsedBuffer);
  EXPECT_GE(driver->interrupts(), 1u);
}

}  // namespace
}  // namespace hearth::virtio
