// virtio-net's snapshot state through the snapshot format: a device's
// saved state, with and without a held-back rx frame, restored into a
// fresh device saves the same again.
#include "vmm/devices/virtio/net/persist.h"

#include <sys/socket.h>

#include <array>
#include <memory>

#include "common/event_loop.h"
#include "gtest/gtest.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/net/net.h"
#include "vmm/devices/virtio/persist.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

namespace v1 = ::hearth::vmm::v1;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;

constexpr uint64_t kFeatures = kFeatureVersion1 | kFeatureEventIdx;

std::unique_ptr<vmm::RateLimiter> Unlimited() { return *vmm::RateLimiter::Create({}); }

// A limiter of one frame per second whose token is spent and whose clock
// stands still: it holds back any frame.
std::unique_ptr<vmm::RateLimiter> Exhausted() {
  vmm::RateLimiterConfig config;
  config.ops = {1, 0, 1000};
  std::unique_ptr<vmm::RateLimiter> limiter = *vmm::RateLimiter::Create(config, [] { return 0; });
  EXPECT_TRUE(limiter->ConsumeRequest(0));
  return limiter;
}

class NetPersistTest : public ::testing::Test {
 protected:
  // A fresh device over a socketpair standing in for the tap, behind a
  // transport the driver has not touched.
  void MakeDevice(std::unique_ptr<vmm::RateLimiter> rx_limiter) {
    driver.reset();
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    peer = UniqueFd(fds[1]);
    net = *Net::CreateForTesting("eth0", UniqueFd(fds[0]), std::array<uint8_t, 6>{2, 0, 0, 0, 0, 7},
                                 1500, std::move(rx_limiter), *vmm::RateLimiter::Create({}));
    driver = std::make_unique<FakeDriver>(net, &guest, loop.get());
  }
  v1::VirtioState Save() {
    v1::VirtioState state;
    absl::Status saved = SaveVirtioState(*driver->transport(), &state);
    EXPECT_TRUE(saved.ok()) << saved;
    return state;
  }

  FakeGuest guest;
  FakeQueue* rx = guest.AddQueue(16);
  FakeQueue* tx = guest.AddQueue(16);
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  UniqueFd peer;
  std::shared_ptr<Net> net;
  std::unique_ptr<FakeDriver> driver;
};

TEST_F(NetPersistTest, PendingRxMapsToItsFields) {
  v1::NetState proto;
  NetStateToProto(NetState{NetState::PendingRx{3, 70}}, &proto);
  EXPECT_TRUE(proto.has_pending_rx());
  EXPECT_EQ(proto.pending_rx_head(), 3u);
  EXPECT_EQ(proto.pending_rx_length(), 70u);
  EXPECT_EQ(NetStateFromProto(proto), (NetState{NetState::PendingRx{3, 70}}));
  // Without has_pending_rx, the other fields mean nothing.
  proto.set_has_pending_rx(false);
  EXPECT_EQ(NetStateFromProto(proto), NetState{});
}

TEST_F(NetPersistTest, SavedStateRestoresIntoAFreshDeviceUnchanged) {
  MakeDevice(Unlimited());
  driver->Initialize(kFeatures, {rx, tx});
  v1::VirtioState saved = Save();
  EXPECT_EQ(saved.device_case(), v1::VirtioState::kNet);
  EXPECT_FALSE(saved.net().has_pending_rx());

  MakeDevice(Unlimited());
  absl::Status restored = RestoreVirtioState(saved, driver->transport());
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_EQ(Save().SerializeAsString(), saved.SerializeAsString());
}

TEST_F(NetPersistTest, AHeldBackRxFrameRestoresIntoAFreshDeviceUnchanged) {
  MakeDevice(Unlimited());
  driver->Initialize(kFeatures, {rx, tx});
  // A frame written into rx chain 3 and held back by the rate limiter, as
  // a snapshot may record it; the fresh device's limiter holds it still.
  v1::VirtioState saved = Save();
  saved.mutable_net()->set_has_pending_rx(true);
  saved.mutable_net()->set_pending_rx_head(3);
  saved.mutable_net()->set_pending_rx_length(70);
  MakeDevice(Exhausted());
  absl::Status restored = RestoreVirtioState(saved, driver->transport());
  ASSERT_TRUE(restored.ok()) << restored;
  v1::VirtioState again = Save();
  EXPECT_EQ(again.SerializeAsString(), saved.SerializeAsString());
}

}  // namespace
}  // namespace hearth::virtio
