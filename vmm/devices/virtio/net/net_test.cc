#include "vmm/devices/virtio/net/net.h"

#include <sys/socket.h>
#include <unistd.h>

#include <array>
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

constexpr uint64_t kFeatures = kFeatureVersion1 | kFeatureEventIdx;
constexpr std::array<uint8_t, 6> kMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x07};
const std::string kVnetHeader(kVnetHeaderSize, '\0');

std::unique_ptr<vmm::RateLimiter> Unlimited() { return *vmm::RateLimiter::Create({}); }

// One request per second, on a clock that only moves when told.
std::unique_ptr<vmm::RateLimiter> OnePerSecond(std::shared_ptr<int64_t> now) {
  vmm::RateLimiterConfig config;
  config.ops = {1, 0, 1000};
  return *vmm::RateLimiter::Create(config, [now] { return *now; });
}

// Net over one end of a SOCK_SEQPACKET socketpair; the test is the "tap"
// at the other end, one datagram per frame (vnet header + Ethernet frame).
class NetTest : public ::testing::Test {
 protected:
  void Create(std::unique_ptr<vmm::RateLimiter> rx_limiter,
              std::unique_ptr<vmm::RateLimiter> tx_limiter) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    peer = UniqueFd(fds[1]);
    auto created = Net::CreateForTesting("eth0", UniqueFd(fds[0]), kMac, 1500,
                                         std::move(rx_limiter), std::move(tx_limiter));
    ASSERT_TRUE(created.ok()) << created.status();
    net = *created;
  }
  void Start(std::unique_ptr<vmm::RateLimiter> rx_limiter = Unlimited(),
             std::unique_ptr<vmm::RateLimiter> tx_limiter = Unlimited()) {
    Create(std::move(rx_limiter), std::move(tx_limiter));
    ASSERT_TRUE(net->Activate(testing::MakeActivateContext(&guest, {rx, tx}, interrupt.get(),
                                                           loop.get(), kFeatures))
                    .ok());
  }
  // The device behind a virtio-mmio transport, brought up by the fake
  // driver (snapshots save and restore the transport with the device).
  void StartBehindTransport(std::unique_ptr<vmm::RateLimiter> rx_limiter = Unlimited()) {
    Create(std::move(rx_limiter), Unlimited());
    driver = std::make_unique<FakeDriver>(net, &guest, loop.get());
    driver->Initialize(kFeatures, {rx, tx});
  }
  // Drops the running device, as the snapshotted VMM exits, and builds a
  // fresh one on a new backend, not yet restored.
  void ReplaceDevice(std::unique_ptr<vmm::RateLimiter> rx_limiter = Unlimited()) {
    driver.reset();
    net.reset();
    Create(std::move(rx_limiter), Unlimited());
    driver = std::make_unique<FakeDriver>(net, &guest, loop.get());
  }
  Buffer PostRx(uint32_t size = kVnetHeaderSize + 1514) {
    Buffer buffer = guest.Writable(size);
    rx->AddChain({buffer});
    return buffer;
  }
  void PeerSend(const std::string& datagram) {
    ASSERT_EQ(::send(peer.get(), datagram.data(), datagram.size(), 0),
              static_cast<ssize_t>(datagram.size()));
  }
  // The next datagram the device wrote, or "<none>".
  std::string PeerReceive() {
    std::string buffer(70000, '\0');
    ssize_t n = ::recv(peer.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) return "<none>";
    buffer.resize(static_cast<size_t>(n));
    return buffer;
  }
  void RunLoop(int iterations = 3) {
    for (int i = 0; i < iterations; ++i) ASSERT_TRUE(loop->RunOnce(10).ok());
  }

  FakeGuest guest;
  FakeQueue* rx = guest.AddQueue(16);
  FakeQueue* tx = guest.AddQueue(16);
  TestInterrupt interrupt;
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  UniqueFd peer;
  std::shared_ptr<Net> net;
  std::unique_ptr<FakeDriver> driver;
};

TEST_F(NetTest, ConfigAndFeatures) {
  Start();
  uint8_t config[12];
  net->ReadConfig(0, absl::MakeSpan(config));
  EXPECT_EQ(std::memcmp(config, kMac.data(), 6), 0);
  uint16_t pairs, mtu;
  std::memcpy(&pairs, config + 8, 2);
  std::memcpy(&mtu, config + 10, 2);
  EXPECT_EQ(pairs, 1);
  EXPECT_EQ(mtu, 1500);
  EXPECT_EQ(net->features() & (kNetFMac | kNetFMtu), kNetFMac | kNetFMtu);
}

TEST_F(NetTest, CreateForTestingStillNeedsAnFd) {
  EXPECT_FALSE(
      Net::CreateForTesting("x", UniqueFd(), std::nullopt, 0, Unlimited(), Unlimited()).ok());
}

TEST_F(NetTest, TxFramesReachTheBackend) {
  Start();
  std::string frame = "\xff\xff\xff\xff\xff\xff" + std::string(54, 'f');
  tx->AddChain({guest.Readable(kVnetHeader), guest.Readable(frame.substr(0, 20)),
                guest.Readable(frame.substr(20))});
  net->ProcessQueue(Net::kTxQueue);
  EXPECT_EQ(PeerReceive(), kVnetHeader + frame);
  std::vector<UsedElement> used = tx->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].length, 0u);
  EXPECT_EQ(net->metrics().tx_frames.Get(), 1u);
  EXPECT_EQ(net->metrics().write_bytes.Get(), frame.size());
  EXPECT_EQ(interrupt.count(), 1u);
}

TEST_F(NetTest, RxFramesReachTheGuest) {
  Buffer buffer = PostRx();
  Start();
  std::string datagram = kVnetHeader + std::string(60, 'r');
  PeerSend(datagram);
  RunLoop();
  std::vector<UsedElement> used = rx->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].length, datagram.size());
  EXPECT_EQ(guest.Read(buffer.address, datagram.size()), datagram);
  EXPECT_EQ(net->metrics().rx_frames.Get(), 1u);
  EXPECT_EQ(net->metrics().read_bytes.Get(), datagram.size());
  EXPECT_EQ(interrupt.count(), 1u);
}

TEST_F(NetTest, RxStallsWithoutBuffersAndResumesOnTheRxKick) {
  Start();
  uint64_t stalls = net->metrics().rx_no_buffers.Get();
  EXPECT_GE(stalls, 1u);
  std::string datagram = kVnetHeader + std::string(40, 'x');
  PeerSend(datagram);
  RunLoop();
  EXPECT_EQ(rx->used_idx(), 0);  // the frame waits in the backend
  Buffer buffer = PostRx();
  net->ProcessQueue(Net::kRxQueue);
  std::vector<UsedElement> used = rx->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(guest.Read(buffer.address, datagram.size()), datagram);
  // That used the last buffer: the backend is not read until the next kick.
  PeerSend(datagram);
  RunLoop();
  EXPECT_EQ(rx->used_idx(), 1);
  PostRx();
  net->ProcessQueue(Net::kRxQueue);
  EXPECT_EQ(rx->used_idx(), 2);
  // With a spare buffer the backend is watched: frames arrive by the loop.
  PostRx();
  net->ProcessQueue(Net::kRxQueue);
  PeerSend(datagram);
  RunLoop();
  EXPECT_EQ(rx->used_idx(), 3);
}

TEST_F(NetTest, RxBuffersTooSmallForTheHeaderAreInvalid) {
  PostRx(kVnetHeaderSize - 1);
  Start();
  std::vector<UsedElement> used = rx->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].length, 0u);
  EXPECT_EQ(net->metrics().invalid_chains.Get(), 1u);
}

TEST_F(NetTest, TxFramesOutsideTheSizeLimitsAreRejected) {
  Start();
  std::string huge(kMaxFrameBytes - kVnetHeaderSize + 1, 'h');
  tx->AddChain({guest.Readable(kVnetHeader), guest.Readable(huge)});
  tx->AddChain({guest.Readable(kVnetHeader.substr(1))});
  std::string largest(kMaxFrameBytes - kVnetHeaderSize, 'l');
  tx->AddChain({guest.Readable(kVnetHeader), guest.Readable(largest)});
  net->ProcessQueue(Net::kTxQueue);
  std::vector<UsedElement> used = tx->TakeUsed();
  ASSERT_EQ(used.size(), 3u);
  EXPECT_EQ(net->metrics().invalid_chains.Get(), 2u);
  EXPECT_EQ(net->metrics().tx_frames.Get(), 1u);
  EXPECT_EQ(PeerReceive().size(), kMaxFrameBytes);  // only the largest legal one
  EXPECT_EQ(PeerReceive(), "<none>");
}

TEST_F(NetTest, TxFramesTheBackendCannotTakeAreDroppedAndCompleted) {
  Start();
  // Nobody reads the peer: its receive buffer fills up after a few frames.
  std::string frame(60000, 'd');
  for (int i = 0; i < 12; ++i) {
    tx->AddChain({guest.Readable(kVnetHeader + frame)});
  }
  net->ProcessQueue(Net::kTxQueue);
  EXPECT_EQ(tx->used_idx(), 12);
  EXPECT_GT(net->metrics().tx_dropped.Get(), 0u);
  EXPECT_EQ(net->metrics().tx_frames.Get() + net->metrics().tx_dropped.Get(), 12u);
}

TEST_F(NetTest, TxRateLimiterHoldsFramesInTheRing) {
  auto now = std::make_shared<int64_t>(0);
  Start(Unlimited(), OnePerSecond(now));
  tx->AddChain({guest.Readable(kVnetHeader + "one")});
  tx->AddChain({guest.Readable(kVnetHeader + "two")});
  net->ProcessQueue(Net::kTxQueue);
  EXPECT_EQ(tx->used_idx(), 1);
  EXPECT_EQ(PeerReceive(), kVnetHeader + "one");
  EXPECT_EQ(PeerReceive(), "<none>");
  EXPECT_EQ(net->metrics().throttled.Get(), 1u);
  *now += 1'000'000'000;
  for (int i = 0; i < 30 && tx->used_idx() < 2; ++i) ASSERT_TRUE(loop->RunOnce(50).ok());
  EXPECT_EQ(tx->used_idx(), 2);
  EXPECT_EQ(PeerReceive(), kVnetHeader + "two");
}

TEST_F(NetTest, RxRateLimiterDefersPublishingUntilItsTimer) {
  auto now = std::make_shared<int64_t>(0);
  PostRx();
  PostRx();
  Start(OnePerSecond(now), Unlimited());
  PeerSend(kVnetHeader + "first");
  PeerSend(kVnetHeader + "second");
  RunLoop();
  EXPECT_EQ(rx->used_idx(), 1);
  EXPECT_EQ(net->metrics().throttled.Get(), 1u);
  *now += 1'000'000'000;
  for (int i = 0; i < 30 && rx->used_idx() < 2; ++i) ASSERT_TRUE(loop->RunOnce(50).ok());
  std::vector<UsedElement> used = rx->TakeUsed();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[1].length, kVnetHeaderSize + 6);
  // The held frame counts like any other.
  EXPECT_EQ(net->metrics().rx_frames.Get(), 2u);
  EXPECT_EQ(net->metrics().requests.Get(), 2u);
}

TEST_F(NetTest, ResetStopsBothDirections) {
  Start();
  net->Reset();
  tx->AddChain({guest.Readable(kVnetHeader + "x")});
  net->ProcessQueue(Net::kTxQueue);
  EXPECT_EQ(tx->used_idx(), 0);
  EXPECT_EQ(PeerReceive(), "<none>");
}

TEST_F(NetTest, SnapshotKeepsAHeldBackRxFrameUntilTheLimiterAllowsIt) {
  auto now = std::make_shared<int64_t>(0);
  PostRx();
  Buffer second = guest.Writable(kVnetHeaderSize + 1514);
  uint16_t second_head = rx->AddChain({second});
  StartBehindTransport(OnePerSecond(now));
  PeerSend(kVnetHeader + "first");
  PeerSend(kVnetHeader + "second");
  RunLoop();
  ASSERT_EQ(rx->used_idx(), 1);  // "second" is in its buffer, not published
  VirtioState state = driver->SaveState();
  ASSERT_TRUE(std::holds_alternative<NetState>(state.device));
  const NetState& saved = std::get<NetState>(state.device);
  ASSERT_TRUE(saved.pending_rx.has_value());
  EXPECT_EQ(saved.pending_rx->head, second_head);
  EXPECT_EQ(saved.pending_rx->length, kVnetHeaderSize + 6);

  // The restored device's limiter starts with its one token spent.
  auto restored_now = std::make_shared<int64_t>(0);
  std::unique_ptr<vmm::RateLimiter> limiter = OnePerSecond(restored_now);
  ASSERT_TRUE(limiter->ConsumeRequest(0));
  ReplaceDevice(std::move(limiter));
  absl::Status restored = driver->transport()->RestoreState(state);
  ASSERT_TRUE(restored.ok()) << restored;
  RunLoop();
  EXPECT_EQ(rx->used_idx(), 1);
  *restored_now += 1'000'000'000;
  for (int i = 0; i < 30 && rx->used_idx() < 2; ++i) ASSERT_TRUE(loop->RunOnce(50).ok());
  std::vector<UsedElement> used = rx->TakeUsed();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[1].id, second_head);
  EXPECT_EQ(used[1].length, kVnetHeaderSize + 6);
  EXPECT_EQ(guest.Read(second.address, kVnetHeaderSize + 6), kVnetHeader + "second");
  EXPECT_NE(driver->Read(kMmioInterruptStatus) & VirtioInterrupt::kUsedBuffer, 0u);
}

TEST_F(NetTest, RestoreRefusesAPendingRxHeadOutsideTheRxQueue) {
  StartBehindTransport();
  VirtioState state = driver->SaveState();
  // The rx queue's size (16), the largest queue size, and beyond.
  for (uint32_t head : {16u, 256u, 0xffffffffu}) {
    ReplaceDevice();
    state.device = NetState{NetState::PendingRx{head, kVnetHeaderSize + 60}};
    EXPECT_EQ(driver->transport()->RestoreState(state).code(), absl::StatusCode::kInvalidArgument)
        << head;
    EXPECT_EQ(net->activated(), nullptr);
  }
}

}  // namespace
}  // namespace hearth::virtio
