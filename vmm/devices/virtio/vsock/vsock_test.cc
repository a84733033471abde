#include "vmm/devices/virtio/vsock/vsock.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::Buffer;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;
using testing::TestInterrupt;

constexpr uint64_t kGuestCid = 3;
constexpr uint32_t kGuestPort = 1234;
constexpr uint32_t kHostPort = 5000;
constexpr uint32_t kFirstHostPort = 1u << 30;  // host-initiated connections
constexpr uint32_t kRxBufferSize = 44 + 4096;

// Hands out one end of a socketpair per connection (or refuses).
class FakeConnector : public VsockConnector {
 public:
  void Connect(uint32_t port, std::function<void(absl::StatusOr<UniqueFd>)> done) override {
    ports.push_back(port);
    if (refuse) {
      done(absl::UnavailableError("nobody listens"));
      return;
    }
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    if (send_buffer > 0) {  // the device's end takes only this much at once
      ASSERT_EQ(::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof(send_buffer)), 0);
    }
    host_ends.emplace_back(fds[1]);
    done(UniqueFd(fds[0]));
  }
  bool refuse = false;
  int send_buffer = 0;
  std::vector<uint32_t> ports;
  std::vector<UniqueFd> host_ends;
};

struct RxPacket {
  VsockHeader header;
  std::string payload;
  uint32_t used_length;
};

// What a non-blocking recv finds: bytes, "" for EOF, or "<EAGAIN>".
std::string Receive(int fd) {
  char buffer[256];
  ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n < 0) return errno == EAGAIN ? "<EAGAIN>" : "<error>";
  return std::string(buffer, static_cast<size_t>(n));
}

void Send(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// A listening socket in the abstract namespace (no path length limits in
// Bazel's deep sandbox directories), and a way to connect to it.
sockaddr_un AbstractAddress() {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::string name = absl::StrCat("hearth-vsock-test-", ::getpid());
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  return address;
}

UniqueFd Listen() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un address = AbstractAddress();
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(fd.get(), 16), 0);
  return fd;
}

UniqueFd ConnectToListener() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address = AbstractAddress();
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

class VsockTest : public ::testing::Test {
 protected:
  void Start(UniqueFd listener = UniqueFd()) {
    auto owned = std::make_unique<FakeConnector>();
    connector = owned.get();
    vsock = std::make_unique<Vsock>(kGuestCid, std::move(listener), std::move(owned));
    PostRx(4);
    ASSERT_TRUE(vsock
                    ->Activate(testing::MakeActivateContext(
                        &guest, {rx, tx, event}, interrupt.get(), loop.get(), kFeatureVersion1))
                    .ok());
  }
  // The device behind a virtio-mmio transport, brought up by the fake
  // driver (snapshots save and restore the transport with the device).
  void StartBehindTransport() {
    MakeDevice();
    PostRx(4);
    driver = std::make_unique<FakeDriver>(vsock, &guest, loop.get());
    driver->Initialize(kFeatureVersion1, {rx, tx, event});
  }
  void MakeDevice() {
    auto owned = std::make_unique<FakeConnector>();
    connector = owned.get();
    vsock = std::make_shared<Vsock>(kGuestCid, UniqueFd(), std::move(owned));
  }
  // Drops the running device, as the snapshotted VMM exits, and restores a
  // fresh one from `state`.
  void RestoreFresh(const VirtioState& state) {
    driver.reset();
    vsock.reset();
    MakeDevice();
    driver = std::make_unique<FakeDriver>(vsock, &guest, loop.get());
    absl::Status restored = driver->transport()->RestoreState(state);
    ASSERT_TRUE(restored.ok()) << restored;
  }
  void PostRx(int count) {
    for (int i = 0; i < count; ++i) {
      Buffer buffer = guest.Writable(kRxBufferSize);
      rx_buffers[rx->AddChain({buffer})] = buffer.address;
    }
  }
  // Packets the device put on the rx queue since the last call; reposts as
  // many buffers as it used.
  std::vector<RxPacket> TakeRx() {
    std::vector<RxPacket> packets;
    for (const testing::UsedElement& used : rx->TakeUsed()) {
      uint64_t address = rx_buffers.at(static_cast<uint16_t>(used.id));
      RxPacket packet;
      std::string header = guest.Read(address, sizeof(VsockHeader));
      std::memcpy(&packet.header, header.data(), sizeof(VsockHeader));
      packet.used_length = used.length;
      if (used.length > sizeof(VsockHeader)) {
        packet.payload =
            guest.Read(address + sizeof(VsockHeader), used.length - sizeof(VsockHeader));
      }
      packets.push_back(packet);
    }
    PostRx(static_cast<int>(packets.size()));
    return packets;
  }
  VsockHeader FromGuest(uint16_t op, uint32_t guest_port = kGuestPort,
                        uint32_t host_port = kHostPort, uint32_t len = 0) {
    VsockHeader h = {};
    h.src_cid = kGuestCid;
    h.dst_cid = kVsockHostCid;
    h.src_port = guest_port;
    h.dst_port = host_port;
    h.len = len;
    h.type = kVsockTypeStream;
    h.op = op;
    h.buf_alloc = guest_buf_alloc;
    h.fwd_cnt = guest_fwd_cnt;
    return h;
  }
  // Puts a packet on the tx queue and kicks it.
  void Transmit(const VsockHeader& header, const std::string& payload = "") {
    std::string bytes(reinterpret_cast<const char*>(&header), sizeof(header));
    tx->AddChain({guest.Readable(bytes + payload)});
    vsock->ProcessQueue(Vsock::kTxQueue);
  }
  // A guest-initiated connection; returns the host end.
  int Connect() {
    Transmit(FromGuest(kVsockOpRequest));
    std::vector<RxPacket> packets = TakeRx();
    EXPECT_EQ(packets.size(), 1u);
    if (packets.empty()) return -1;
    EXPECT_EQ(packets[0].header.op, kVsockOpResponse);
    return connector->host_ends.back().get();
  }
  // Runs the event loop until `done` (at most ~2 s).
  bool RunUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 100; ++i) {
      if (done()) return true;
      EXPECT_TRUE(loop->RunOnce(20).ok());
    }
    return done();
  }
  std::vector<RxPacket> WaitForRx() {
    RunUntil([&] { return rx->used_idx() != last_used_; });
    std::vector<RxPacket> packets = TakeRx();
    last_used_ = rx->used_idx();
    return packets;
  }

  FakeGuest guest;
  FakeQueue* rx = guest.AddQueue(16);
  FakeQueue* tx = guest.AddQueue(16);
  FakeQueue* event = guest.AddQueue(16);
  std::map<uint16_t, uint64_t> rx_buffers;
  TestInterrupt interrupt;
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  FakeConnector* connector = nullptr;
  std::shared_ptr<Vsock> vsock;
  std::unique_ptr<FakeDriver> driver;
  uint32_t guest_buf_alloc = 65536;
  uint32_t guest_fwd_cnt = 0;
  uint16_t last_used_ = 0;
};

TEST_F(VsockTest, ConfigHoldsTheGuestCid) {
  Start();
  uint64_t cid = 0;
  vsock->ReadConfig(0, absl::MakeSpan(reinterpret_cast<uint8_t*>(&cid), 8));
  EXPECT_EQ(cid, kGuestCid);
  EXPECT_EQ(vsock->device_type(), kDeviceVsock);
}

TEST_F(VsockTest, GuestRequestIsAnsweredWithResponse) {
  Start();
  Transmit(FromGuest(kVsockOpRequest));
  EXPECT_EQ(connector->ports, std::vector<uint32_t>{kHostPort});
  EXPECT_EQ(tx->TakeUsed().size(), 1u);
  std::vector<RxPacket> packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  const VsockHeader& h = packets[0].header;
  EXPECT_EQ(h.op, kVsockOpResponse);
  EXPECT_EQ(h.type, kVsockTypeStream);
  EXPECT_EQ(h.src_cid, kVsockHostCid);
  EXPECT_EQ(h.dst_cid, kGuestCid);
  EXPECT_EQ(h.src_port, kHostPort);
  EXPECT_EQ(h.dst_port, kGuestPort);
  EXPECT_EQ(h.len, 0u);
  EXPECT_EQ(h.buf_alloc, Vsock::kBufAlloc);
  EXPECT_EQ(packets[0].used_length, sizeof(VsockHeader));
  EXPECT_EQ(vsock->connection_count(), 1u);
  EXPECT_EQ(vsock->metrics().connections_opened.Get(), 1u);
  EXPECT_GE(interrupt.count(), 1u);
}

TEST_F(VsockTest, GuestPayloadReachesTheHostSocket) {
  Start();
  int host = Connect();
  Transmit(FromGuest(kVsockOpRw, kGuestPort, kHostPort, 5), "hello");
  EXPECT_EQ(Receive(host), "hello");
  EXPECT_EQ(vsock->metrics().write_bytes.Get(), 5u);
  // Split over descriptors, too.
  std::string header_bytes(sizeof(VsockHeader), '\0');
  VsockHeader h = FromGuest(kVsockOpRw, kGuestPort, kHostPort, 6);
  std::memcpy(header_bytes.data(), &h, sizeof(h));
  tx->AddChain({guest.Readable(header_bytes.substr(0, 20)),
                guest.Readable(header_bytes.substr(20) + "wo"), guest.Readable("rld!")});
  vsock->ProcessQueue(Vsock::kTxQueue);
  EXPECT_EQ(Receive(host), "world!");
}

TEST_F(VsockTest, HostDataReachesTheGuestWithCorrectHeader) {
  Start();
  int host = Connect();
  last_used_ = rx->used_idx();
  Transmit(FromGuest(kVsockOpRw, kGuestPort, kHostPort, 3), "abc");
  Send(host, "world");
  std::vector<RxPacket> packets = WaitForRx();
  ASSERT_EQ(packets.size(), 1u);
  const VsockHeader& h = packets[0].header;
  EXPECT_EQ(h.op, kVsockOpRw);
  EXPECT_EQ(h.len, 5u);
  EXPECT_EQ(packets[0].payload, "world");
  EXPECT_EQ(packets[0].used_length, sizeof(VsockHeader) + 5);
  EXPECT_EQ(h.src_cid, kVsockHostCid);
  EXPECT_EQ(h.dst_cid, kGuestCid);
  EXPECT_EQ(h.src_port, kHostPort);
  EXPECT_EQ(h.dst_port, kGuestPort);
  EXPECT_EQ(h.fwd_cnt, 3u);  // the guest's 3 bytes went to the host
  EXPECT_EQ(h.buf_alloc, Vsock::kBufAlloc);
  EXPECT_EQ(vsock->metrics().read_bytes.Get(), 5u);
}

TEST_F(VsockTest, HostDataRespectsTheGuestsCredit) {
  guest_buf_alloc = 8;
  Start();
  int host = Connect();
  last_used_ = rx->used_idx();
  Send(host, "abcdefghijkl");
  std::vector<RxPacket> packets = WaitForRx();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRw);
  EXPECT_EQ(packets[0].payload, "abcdefgh");
  EXPECT_EQ(packets[1].header.op, kVsockOpCreditRequest);
  // Only one credit request while waiting.
  ASSERT_TRUE(loop->RunOnce(20).ok());
  vsock->ProcessQueue(Vsock::kRxQueue);
  EXPECT_TRUE(TakeRx().empty());

  // The guest consumed the 8 bytes.
  guest_fwd_cnt = 8;
  last_used_ = rx->used_idx();
  Transmit(FromGuest(kVsockOpCreditUpdate));
  packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRw);
  EXPECT_EQ(packets[0].payload, "ijkl");
}

TEST_F(VsockTest, GuestCreditRequestIsAnsweredWithCreditUpdate) {
  Start();
  Connect();
  Transmit(FromGuest(kVsockOpRw, kGuestPort, kHostPort, 4), "data");
  Transmit(FromGuest(kVsockOpCreditRequest));
  std::vector<RxPacket> packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpCreditUpdate);
  EXPECT_EQ(packets[0].header.fwd_cnt, 4u);
}

TEST_F(VsockTest, GuestShutdownOfItsSendSideIsEofForTheHost) {
  Start();
  int host = Connect();
  VsockHeader shutdown = FromGuest(kVsockOpShutdown);
  shutdown.flags = kVsockShutdownSend;
  Transmit(shutdown);
  EXPECT_EQ(Receive(host), "");  // EOF
  EXPECT_EQ(vsock->connection_count(), 1u);
  // Both directions: the device finishes with RST.
  shutdown.flags = kVsockShutdownSend | kVsockShutdownRcv;
  Transmit(shutdown);
  std::vector<RxPacket> packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRst);
  EXPECT_EQ(vsock->connection_count(), 0u);
}

// The guest's data still waiting for the host socket when it shuts down
// reaches the host before the EOF (SEND) or the RST (both directions).
TEST_F(VsockTest, GuestShutdownComesAfterItsDataReachedTheHost) {
  Start();
  connector->send_buffer = 4096;
  for (uint32_t flags : {kVsockShutdownSend, kVsockShutdownSend | kVsockShutdownRcv}) {
    SCOPED_TRACE(flags);
    int host = Connect();
    uint64_t written_before = vsock->metrics().write_bytes.Get();
    std::string sent;
    for (int i = 0; i < 16; ++i) {
      std::string chunk(4096, static_cast<char>('a' + i));
      Transmit(FromGuest(kVsockOpRw, kGuestPort, kHostPort, 4096), chunk);
      sent += chunk;
    }
    ASSERT_LT(vsock->metrics().write_bytes.Get() - written_before, sent.size())
        << "the socket took everything at once: nothing would wait in the device";
    VsockHeader shutdown = FromGuest(kVsockOpShutdown);
    shutdown.flags = flags;
    Transmit(shutdown);
    std::string got;
    bool eof = RunUntil([&] {
      for (;;) {
        std::string r = Receive(host);
        if (r == "<EAGAIN>") return false;
        if (r.empty()) return true;
        got += r;
      }
    });
    EXPECT_TRUE(eof);
    EXPECT_EQ(got.size(), sent.size());
    EXPECT_TRUE(got == sent);
    std::vector<RxPacket> packets = TakeRx();
    bool rst = false;
    for (const RxPacket& p : packets) rst |= p.header.op == kVsockOpRst;
    if (flags & kVsockShutdownRcv) {
      EXPECT_TRUE(rst) << "both directions done: RST";
      EXPECT_EQ(vsock->connection_count(), 0u);
    } else {
      EXPECT_FALSE(rst);
      EXPECT_EQ(vsock->connection_count(), 1u);
      Transmit(FromGuest(kVsockOpRst));  // end it for the next round
    }
  }
}

// Host data of every connection reaches the guest, whichever connections
// between them have nothing to send.
TEST_F(VsockTest, EveryConnectionWithDataIsServed) {
  Start();
  std::vector<int> hosts;
  for (uint32_t port : {kGuestPort, kGuestPort + 1, kGuestPort + 2, kGuestPort + 3}) {
    Transmit(FromGuest(kVsockOpRequest, port));
    ASSERT_EQ(TakeRx().size(), 1u);
    hosts.push_back(connector->host_ends.back().get());
  }
  last_used_ = rx->used_idx();
  Send(hosts[0], "zero");
  Send(hosts[2], "two");
  Send(hosts[3], "three");
  std::map<uint32_t, std::string> got;
  RunUntil([&] {
    for (const RxPacket& p : TakeRx()) got[p.header.dst_port] += p.payload;
    return got.size() == 3;
  });
  EXPECT_EQ(got[kGuestPort], "zero");
  EXPECT_EQ(got[kGuestPort + 2], "two");
  EXPECT_EQ(got[kGuestPort + 3], "three");
  EXPECT_EQ(got.count(kGuestPort + 1), 0u);
}

TEST_F(VsockTest, GuestRstClosesTheHostSocketWithoutAReply) {
  Start();
  int host = Connect();
  Transmit(FromGuest(kVsockOpRst));
  EXPECT_EQ(vsock->connection_count(), 0u);
  EXPECT_EQ(Receive(host), "");
  EXPECT_TRUE(TakeRx().empty());
  EXPECT_EQ(vsock->metrics().rst_sent.Get(), 0u);
}

TEST_F(VsockTest, HostHangupIsAShutdownForTheGuest) {
  Start();
  Connect();
  last_used_ = rx->used_idx();
  connector->host_ends.back() = UniqueFd();  // close the host end
  std::vector<RxPacket> packets = WaitForRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpShutdown);
  EXPECT_EQ(packets[0].header.flags, kVsockShutdownRcv | kVsockShutdownSend);
}

TEST_F(VsockTest, PacketsWithTheWrongCidsAreDropped) {
  Start();
  VsockHeader spoofed = FromGuest(kVsockOpRequest);
  spoofed.src_cid = 4;
  Transmit(spoofed);
  VsockHeader elsewhere = FromGuest(kVsockOpRequest);
  elsewhere.dst_cid = 5;
  Transmit(elsewhere);
  EXPECT_TRUE(connector->ports.empty());
  EXPECT_TRUE(TakeRx().empty());
  EXPECT_EQ(vsock->metrics().dropped_packets.Get(), 2u);
  EXPECT_EQ(tx->TakeUsed().size(), 2u);  // still completed
}

TEST_F(VsockTest, RequestRefusedByTheConnectorIsReset) {
  Start();
  connector->refuse = true;
  Transmit(FromGuest(kVsockOpRequest));
  std::vector<RxPacket> packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRst);
  EXPECT_EQ(packets[0].header.dst_port, kGuestPort);
  EXPECT_EQ(vsock->connection_count(), 0u);
  EXPECT_EQ(vsock->metrics().connections_refused.Get(), 1u);
}

TEST_F(VsockTest, PacketsForUnknownConnectionsAreReset) {
  Start();
  Transmit(FromGuest(kVsockOpRw, kGuestPort, kHostPort, 2), "hi");
  std::vector<RxPacket> packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRst);
  // An RST is never answered with one.
  Transmit(FromGuest(kVsockOpRst));
  EXPECT_TRUE(TakeRx().empty());
  EXPECT_EQ(vsock->metrics().dropped_packets.Get(), 2u);
}

TEST_F(VsockTest, NonStreamSocketsAreReset) {
  Start();
  VsockHeader h = FromGuest(kVsockOpRequest);
  h.type = 2;  // SEQPACKET
  Transmit(h);
  std::vector<RxPacket> packets = TakeRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRst);
  EXPECT_TRUE(connector->ports.empty());
}

TEST_F(VsockTest, MalformedPacketsAreCountedAndCompleted) {
  Start();
  tx->AddChain({guest.Readable("short")});
  VsockHeader h = FromGuest(kVsockOpRw, kGuestPort, kHostPort, 100);
  Transmit(h, "only ten b");
  EXPECT_EQ(vsock->metrics().invalid_chains.Get(), 2u);
  EXPECT_EQ(tx->TakeUsed().size(), 2u);
  EXPECT_TRUE(TakeRx().empty());
}

TEST_F(VsockTest, HostInitiatedConnectionGetsOkAndRelays) {
  Start(Listen());
  UniqueFd client = ConnectToListener();
  Send(client.get(), "CONNECT 52\n");
  std::vector<RxPacket> packets = WaitForRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kVsockOpRequest);
  EXPECT_EQ(packets[0].header.dst_port, 52u);
  EXPECT_EQ(packets[0].header.src_port, kFirstHostPort);
  EXPECT_EQ(packets[0].header.dst_cid, kGuestCid);
  EXPECT_EQ(Receive(client.get()), "<EAGAIN>");  // no OK before the guest accepts

  Transmit(FromGuest(kVsockOpResponse, 52, kFirstHostPort));
  EXPECT_EQ(Receive(client.get()), absl::StrCat("OK ", kFirstHostPort, "\n"));
  EXPECT_EQ(vsock->metrics().connections_opened.Get(), 1u);

  Transmit(FromGuest(kVsockOpRw, 52, kFirstHostPort, 2), "hi");
  EXPECT_EQ(Receive(client.get()), "hi");
  last_used_ = rx->used_idx();
  Send(client.get(), "yo");
  packets = WaitForRx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].payload, "yo");
  EXPECT_EQ(packets[0].header.dst_port, 52u);
}

TEST_F(VsockTest, MalformedConnectLinesAreRefused) {
  Start(Listen());
  const std::string lines[] = {
      "CONNECT\n",    "CONNECT \n",           "connect 52\n", "CONNECT x52\n",      "CONNECT 52 \n",
      "CONNECT -1\n", "CONNECT 4294967296\n", "CONNECT +5\n", std::string(40, 'C'),
      "CONNECT 5",  // then hangs up
  };
  uint64_t refused = 0;
  for (const std::string& line : lines) {
    UniqueFd client = ConnectToListener();
    Send(client.get(), line);
    if (line == "CONNECT 5") ::shutdown(client.get(), SHUT_WR);
    ++refused;
    EXPECT_TRUE(RunUntil([&] { return vsock->metrics().connections_refused.Get() == refused; }))
        << line;
    // Closed without an OK (ECONNRESET if it left bytes unread).
    std::string answer = Receive(client.get());
    EXPECT_TRUE(answer == "" || answer == "<error>") << line << ": " << answer;
  }
  EXPECT_TRUE(TakeRx().empty());
  EXPECT_EQ(vsock->connection_count(), 0u);
}

TEST_F(VsockTest, RxStallsWithoutBuffersAndResumesOnKick) {
  Start();
  int host = Connect();
  // Use up the remaining rx buffers' worth of packets without reposting.
  for (int i = 0; i < 10 && rx->used_idx() != rx->avail_idx(); ++i) {
    vsock->ProcessQueue(Vsock::kRxQueue);
    Send(host, "x");
    ASSERT_TRUE(loop->RunOnce(20).ok());
  }
  ASSERT_EQ(rx->used_idx(), rx->avail_idx());
  rx->TakeUsed();
  Send(host, "later");
  ASSERT_TRUE(loop->RunOnce(20).ok());
  EXPECT_EQ(rx->used_idx(), rx->avail_idx());  // nothing to put it in
  // The guest posts buffers and kicks rx.
  Buffer buffer = guest.Writable(kRxBufferSize);
  rx_buffers[rx->AddChain({buffer})] = buffer.address;
  vsock->ProcessQueue(Vsock::kRxQueue);
  std::vector<testing::UsedElement> used = rx->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_NE(guest.Read(buffer.address + sizeof(VsockHeader), used[0].length - 44).find("later"),
            std::string::npos);
}

TEST_F(VsockTest, RestoredDeviceTellsTheDriverItsTransportWasReset) {
  StartBehindTransport();
  Buffer buffer = guest.Writable(8);
  guest.Write(buffer.address, std::string(8, '\xff'));
  uint16_t head = event->AddChain({buffer});
  Connect();
  driver->Write(kMmioInterruptAck, VirtioInterrupt::kUsedBuffer);
  VirtioState state = driver->SaveState();
  EXPECT_EQ(state.interrupt_status, 0u);

  RestoreFresh(state);
  std::vector<testing::UsedElement> used = event->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_EQ(used[0].length, 4u);
  // struct virtio_vsock_event: id VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (0).
  EXPECT_EQ(guest.Read(buffer.address, 8), std::string(4, '\0') + std::string(4, '\xff'));
  EXPECT_EQ(driver->Read(kMmioInterruptStatus), VirtioInterrupt::kUsedBuffer);
  EXPECT_GE(driver->interrupts(), 1u);
  EXPECT_EQ(vsock->connection_count(), 0u);
}

TEST_F(VsockTest, RestoreWithoutAnEventBufferStillServesTheDriver) {
  StartBehindTransport();
  VirtioState state = driver->SaveState();
  RestoreFresh(state);
  EXPECT_EQ(event->used_idx(), 0);
  EXPECT_EQ(driver->Read(kMmioInterruptStatus), 0u);
  // The restored device works: a new connection is answered.
  EXPECT_GE(Connect(), 0);
  EXPECT_EQ(vsock->connection_count(), 1u);
}

}  // namespace
}  // namespace hearth::virtio
