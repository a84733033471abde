// virtio-vsock packet parsing (vmm/devices/virtio/vsock/packet.h) and the
// device's tx/rx paths: the fuzzer plays the guest (tx packets with any
// header, rx buffers of any size) and the host side (connections accepted
// or refused, bytes written, sockets closed).
//
// Input: a sequence of operations, each an opcode u8 and its operands:
//   0 tx packet: src_cid_ok u8, dst_cid_ok u8, guest port u8, host port u8,
//     len u16, type u8, op u8, flags u8, buf_alloc u32, fwd_cnt u32,
//     payload length u16, payload bytes, split u8
//   1 post rx buffers: count u8 (1..4), size u16
//   2 host writes: connection u8, length u8, bytes
//   3 host closes: connection u8
//   4 run the event loop once        5 kick rx
//   6 toggle the connector refusing  7 parse a raw packet: length u8, bytes
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "tests/fuzz/fuzz_support.h"
#include "vmm/devices/virtio/testing/fake_guest.h"
#include "vmm/devices/virtio/vsock/packet.h"
#include "vmm/devices/virtio/vsock/vsock.h"

namespace hearth::fuzz {
namespace {

using virtio::VsockHeader;
using virtio::testing::Buffer;
using virtio::testing::FakeGuest;
using virtio::testing::FakeQueue;

constexpr uint64_t kGuestCid = 3;
constexpr int kMaxOperations = 64;

class Connector : public virtio::VsockConnector {
 public:
  void Connect(uint32_t, std::function<void(absl::StatusOr<UniqueFd>)> done) override {
    int fds[2];
    if (refuse || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      done(absl::UnavailableError("refused"));
      return;
    }
    host_ends.emplace_back(fds[1]);
    done(UniqueFd(fds[0]));
  }
  bool refuse = false;
  std::vector<UniqueFd> host_ends;
};

class Harness {
 public:
  Harness() {
    auto owned = std::make_unique<Connector>();
    connector_ = owned.get();
    vsock_ = std::make_unique<virtio::Vsock>(kGuestCid, UniqueFd(), std::move(owned));
    FUZZ_CHECK(vsock_
                   ->Activate(virtio::testing::MakeActivateContext(
                       &guest_, {rx_, tx_, event_}, interrupt_.get(), loop_.get(),
                       virtio::kFeatureVersion1 | virtio::kFeatureIndirectDesc))
                   .ok());
  }

  void Run(FuzzInput* input) {
    for (int i = 0; i < kMaxOperations && !input->empty(); ++i) {
      switch (input->Get<uint8_t>() % 8) {
        case 0:
          Transmit(input);
          break;
        case 1:
          PostRx(input);
          break;
        case 2:
          HostWrite(input);
          break;
        case 3:
          HostClose(input);
          break;
        case 4:
          FUZZ_CHECK(loop_->RunOnce(0).ok());
          break;
        case 5:
          vsock_->ProcessQueue(virtio::Vsock::kRxQueue);
          break;
        case 6:
          connector_->refuse = !connector_->refuse;
          break;
        case 7:
          ParseRaw(input);
          break;
      }
      CheckRx();
      // Every tx chain is completed at once.
      FUZZ_CHECK(tx_->used_idx() == tx_->avail_idx());
      FUZZ_CHECK(vsock_->connection_count() <= virtio::Vsock::kMaxConnections);
    }
  }

 private:
  void Transmit(FuzzInput* input) {
    VsockHeader h = {};
    h.src_cid = input->Bool() ? kGuestCid : input->Get<uint8_t>();
    h.dst_cid = input->Bool() ? virtio::kVsockHostCid : input->Get<uint8_t>();
    h.src_port = input->Get<uint8_t>() % 4;
    h.dst_port = input->Get<uint8_t>() % 4;
    h.len = input->Get<uint16_t>();
    h.type = input->Get<uint8_t>() % 3;
    h.op = input->Get<uint8_t>() % 9;
    h.flags = input->Get<uint8_t>() % 4;
    h.buf_alloc = input->Get<uint32_t>();
    h.fwd_cnt = input->Get<uint32_t>();
    std::string payload = input->Bytes(input->Get<uint16_t>() % 2048);
    std::string bytes = std::string(reinterpret_cast<const char*>(&h), sizeof(h)) + payload;
    size_t split = input->Get<uint8_t>() % (bytes.size() + 1);
    std::vector<Buffer> buffers = {guest_.Readable(bytes.substr(0, split))};
    if (split < bytes.size()) buffers.push_back(guest_.Readable(bytes.substr(split)));
    if (tx_->avail_idx() - tx_->used_idx() + buffers.size() > tx_->size()) return;
    tx_->AddChain(buffers);
    vsock_->ProcessQueue(virtio::Vsock::kTxQueue);
  }

  void PostRx(FuzzInput* input) {
    int count = 1 + input->Get<uint8_t>() % 4;
    uint32_t size = input->Get<uint16_t>() % (sizeof(VsockHeader) + 8192);
    for (int i = 0; i < count; ++i) {
      // One descriptor per chain: descriptors are reused round-robin, so at
      // most a queue's worth may be outstanding.
      if (static_cast<uint16_t>(rx_->avail_idx() - rx_->used_idx()) >= rx_->size()) return;
      Buffer buffer = guest_.Writable(size);
      rx_buffers_[rx_->AddChain({buffer})] = buffer;
    }
  }

  void HostWrite(FuzzInput* input) {
    if (connector_->host_ends.empty()) return;
    UniqueFd& end = connector_->host_ends[input->Get<uint8_t>() % connector_->host_ends.size()];
    std::string bytes = input->Bytes(input->Get<uint8_t>());
    if (end.valid())
      (void)::send(end.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  void HostClose(FuzzInput* input) {
    if (connector_->host_ends.empty()) return;
    connector_->host_ends[input->Get<uint8_t>() % connector_->host_ends.size()] = UniqueFd();
  }

  void ParseRaw(FuzzInput* input) {
    std::string bytes = input->Bytes(input->Get<uint8_t>());
    virtio::DescriptorChain chain;
    chain.descriptors.push_back({guest_.Put(bytes), static_cast<uint32_t>(bytes.size()), false});
    chain.readable_bytes = bytes.size();
    auto packet = virtio::ParseVsockPacket(guest_.memory_ref(), chain);
    if (packet.ok()) {
      FUZZ_CHECK(bytes.size() >= sizeof(VsockHeader));
      FUZZ_CHECK(packet->header.len <= virtio::kVsockMaxPayload);
      FUZZ_CHECK(packet->header.len <= bytes.size() - sizeof(VsockHeader));
    } else if (bytes.size() >= sizeof(VsockHeader)) {
      VsockHeader h;
      std::memcpy(&h, bytes.data(), sizeof(h));
      FUZZ_CHECK(h.len > virtio::kVsockMaxPayload || h.len > bytes.size() - sizeof(VsockHeader));
    }
  }

  // Whatever the device put on the rx queue is a well-formed packet from
  // the host to this guest, within the buffer the guest gave.
  void CheckRx() {
    for (const virtio::testing::UsedElement& used : rx_->TakeUsed()) {
      auto it = rx_buffers_.find(static_cast<uint16_t>(used.id));
      FUZZ_CHECK(it != rx_buffers_.end());
      const Buffer buffer = it->second;
      rx_buffers_.erase(it);
      FUZZ_CHECK(used.length <= buffer.length);
      if (used.length == 0) continue;  // a buffer too small for a header
      FUZZ_CHECK(used.length >= sizeof(VsockHeader));
      VsockHeader h;
      std::string raw = guest_.Read(buffer.address, sizeof(h));
      std::memcpy(&h, raw.data(), sizeof(h));
      FUZZ_CHECK(h.src_cid == virtio::kVsockHostCid);
      FUZZ_CHECK(h.dst_cid == kGuestCid);
      FUZZ_CHECK(h.type == virtio::kVsockTypeStream);
      FUZZ_CHECK(h.len == used.length - sizeof(VsockHeader));
      FUZZ_CHECK(h.op == virtio::kVsockOpRw ? h.len > 0 && h.len <= virtio::kVsockMaxPayload
                                            : h.len == 0);
      FUZZ_CHECK(h.op >= virtio::kVsockOpRequest && h.op <= virtio::kVsockOpCreditRequest);
    }
  }

  FakeGuest guest_{4 << 20};
  FakeQueue* rx_ = guest_.AddQueue(16);
  FakeQueue* tx_ = guest_.AddQueue(16);
  FakeQueue* event_ = guest_.AddQueue(4);
  std::map<uint16_t, Buffer> rx_buffers_;
  virtio::testing::TestInterrupt interrupt_;
  std::unique_ptr<EventLoop> loop_ = *EventLoop::Create();
  Connector* connector_ = nullptr;
  std::unique_ptr<virtio::Vsock> vsock_;
};

}  // namespace
}  // namespace hearth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hearth::fuzz::FuzzInput input(data, size);
  hearth::fuzz::Harness harness;
  harness.Run(&input);
  return 0;
}
