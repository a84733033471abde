#include "vmm/devices/virtio/rng/rng.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::Buffer;
using testing::FakeGuest;
using testing::FakeQueue;
using testing::TestInterrupt;
using testing::UsedElement;

constexpr uint64_t kFeatures = kFeatureVersion1 | kFeatureIndirectDesc;

class RngTest : public ::testing::Test {
 protected:
  void Start(std::unique_ptr<vmm::RateLimiter> limiter = *vmm::RateLimiter::Create({})) {
    rng = std::make_unique<Rng>(std::move(limiter));
    ASSERT_TRUE(rng->Activate(testing::MakeActivateContext(&guest, {queue}, interrupt.get(),
                                                           loop.get(), kFeatures))
                    .ok());
  }
  std::vector<UsedElement> Kick() {
    rng->ProcessQueue(0);
    return queue->TakeUsed();
  }
  // Whether `length` bytes at `address` are anything but zeros (64 random
  // bytes are all zero with probability 2^-512).
  bool Filled(uint64_t address, uint64_t length) {
    return guest.Read(address, length) != std::string(length, '\0');
  }

  FakeGuest guest;
  FakeQueue* queue = guest.AddQueue(16);
  TestInterrupt interrupt;
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  std::unique_ptr<Rng> rng;
};

TEST_F(RngTest, OffersOnlyTransportFeatures) {
  Rng device(*vmm::RateLimiter::Create({}));
  EXPECT_EQ(device.features(), kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx);
  EXPECT_EQ(device.device_type(), kDeviceRng);
  EXPECT_EQ(device.queue_max_sizes(), std::vector<uint16_t>{256});
}

TEST_F(RngTest, FillsEveryWritableByte) {
  Start();
  Buffer a = guest.Writable(64);
  Buffer b = guest.Writable(3);
  Buffer c = guest.Writable(64);
  uint16_t head = queue->AddChain({a, b, c});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_EQ(used[0].length, 131u);
  EXPECT_TRUE(Filled(a.address, 64));
  EXPECT_TRUE(Filled(c.address, 64));
  EXPECT_EQ(rng->metrics().read_bytes.Get(), 131u);
  EXPECT_EQ(rng->metrics().requests.Get(), 1u);
  EXPECT_EQ(interrupt.count(), 1u);
}

TEST_F(RngTest, IndirectChainsWork) {
  Start();
  Buffer a = guest.Writable(64);
  queue->AddIndirectChain({a}, guest.Allocate(16));
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].length, 64u);
  EXPECT_TRUE(Filled(a.address, 64));
}

TEST_F(RngTest, RequestsAreCappedAt64KiB) {
  Start();
  Buffer a = guest.Writable(40 * 1024);
  Buffer b = guest.Writable(40 * 1024);
  queue->AddChain({a, b});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].length, Rng::kMaxRequestBytes);
  // The first 24 KiB of the second buffer are filled, its tail is not.
  EXPECT_TRUE(Filled(b.address + 24 * 1024 - 64, 64));
  EXPECT_FALSE(Filled(b.address + 24 * 1024, 16 * 1024));
}

TEST_F(RngTest, ChainsWithoutWritableBytesAreErrors) {
  Start();
  queue->AddChain({guest.Readable("please")});
  queue->Publish(99);  // malformed
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].length, 0u);
  EXPECT_EQ(used[1].id, 99u);
  EXPECT_EQ(used[1].length, 0u);
  EXPECT_EQ(rng->metrics().errors.Get(), 1u);
  EXPECT_EQ(rng->metrics().invalid_chains.Get(), 1u);
}

TEST_F(RngTest, NoInterruptWhenTheDriverSuppressesIt) {
  Start();
  queue->SetNoInterrupt(true);
  queue->AddChain({guest.Writable(8)});
  EXPECT_EQ(Kick().size(), 1u);
  EXPECT_EQ(interrupt.count(), 0u);
}

TEST_F(RngTest, RateLimiterThrottlesBytesAndResumesOnItsTimer) {
  auto now = std::make_shared<int64_t>(0);
  vmm::RateLimiterConfig config;
  config.bandwidth = {100, 0, 1000};  // 100 bytes per second
  Start(*vmm::RateLimiter::Create(config, [now] { return *now; }));
  queue->AddChain({guest.Writable(60)});
  queue->AddChain({guest.Writable(60)});
  std::vector<UsedElement> used = Kick();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(rng->metrics().throttled.Get(), 1u);
  EXPECT_EQ(rng->metrics().read_bytes.Get(), 60u);

  *now += 1'000'000'000;
  for (int i = 0; i < 20 && queue->used_idx() < 2; ++i) {
    ASSERT_TRUE(loop->RunOnce(100).ok());
  }
  EXPECT_EQ(queue->used_idx(), 2);
  EXPECT_EQ(rng->metrics().read_bytes.Get(), 120u);
}

TEST_F(RngTest, ActivationNeedsTheQueueAndResetStops) {
  Rng device(*vmm::RateLimiter::Create({}));
  EXPECT_FALSE(device
                   .Activate(testing::MakeActivateContext(&guest, {nullptr}, interrupt.get(),
                                                          loop.get(), kFeatures))
                   .ok());
  Start();
  rng->Reset();
  queue->AddChain({guest.Writable(8)});
  EXPECT_TRUE(Kick().empty());
}

}  // namespace
}  // namespace hearth::virtio
