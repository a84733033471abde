#include "vmm/devices/virtio/vsock/packet.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::FakeGuest;
using ::testing::HasSubstr;

std::string Bytes(const VsockHeader& header) {
  return std::string(reinterpret_cast<const char*>(&header), sizeof(header));
}

VsockHeader Rw(uint32_t len) {
  VsockHeader h = {};
  h.src_cid = 3;
  h.dst_cid = 2;
  h.src_port = 1000;
  h.dst_port = 2000;
  h.len = len;
  h.type = kVsockTypeStream;
  h.op = kVsockOpRw;
  h.buf_alloc = 4096;
  h.fwd_cnt = 17;
  return h;
}

class VsockPacketTest : public ::testing::Test {
 protected:
  void AddReadable(const std::string& bytes) {
    chain.descriptors.push_back({guest.Put(bytes), static_cast<uint32_t>(bytes.size()), false});
    chain.readable_bytes += bytes.size();
  }
  FakeGuest guest;
  DescriptorChain chain;
};

TEST_F(VsockPacketTest, ParsesTheHeaderWhateverTheSplit) {
  std::string bytes = Bytes(Rw(5)) + "hello";
  AddReadable(bytes.substr(0, 10));
  AddReadable(bytes.substr(10, 37));  // header ends 3 bytes into the payload
  AddReadable(bytes.substr(47));
  chain.descriptors.push_back({guest.Allocate(64), 64, true});  // ignored
  chain.writable_bytes = 64;
  absl::StatusOr<VsockPacket> packet = ParseVsockPacket(guest.memory_ref(), chain);
  ASSERT_TRUE(packet.ok()) << packet.status();
  EXPECT_EQ(packet->header.src_cid, 3u);
  EXPECT_EQ(packet->header.dst_port, 2000u);
  EXPECT_EQ(packet->header.len, 5u);
  EXPECT_EQ(packet->header.op, kVsockOpRw);
  EXPECT_EQ(packet->header.fwd_cnt, 17u);
}

TEST_F(VsockPacketTest, ControlPacketsNeedNoPayload) {
  VsockHeader h = Rw(0);
  h.op = kVsockOpRequest;
  AddReadable(Bytes(h));
  EXPECT_TRUE(ParseVsockPacket(guest.memory_ref(), chain).ok());
}

TEST_F(VsockPacketTest, ShortHeaderIsRejected) {
  AddReadable(Bytes(Rw(0)).substr(0, 43));
  absl::StatusOr<VsockPacket> packet = ParseVsockPacket(guest.memory_ref(), chain);
  EXPECT_EQ(packet.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(packet.status().message(), HasSubstr("no 44-byte header"));
}

TEST_F(VsockPacketTest, PayloadMustFitInTheChain) {
  AddReadable(Bytes(Rw(6)) + "hello");
  absl::StatusOr<VsockPacket> packet = ParseVsockPacket(guest.memory_ref(), chain);
  EXPECT_THAT(packet.status().message(), HasSubstr("announces 6 payload bytes; the chain has 5"));
}

TEST_F(VsockPacketTest, PayloadIsCappedAt64KiB) {
  std::string payload(kVsockMaxPayload + 1, 'p');
  AddReadable(Bytes(Rw(kVsockMaxPayload + 1)) + payload);
  EXPECT_THAT(ParseVsockPacket(guest.memory_ref(), chain).status().message(),
              HasSubstr("exceeds 65536"));
  chain.Clear();
  AddReadable(Bytes(Rw(0xffffffff)));
  EXPECT_FALSE(ParseVsockPacket(guest.memory_ref(), chain).ok());
  chain.Clear();
  AddReadable(Bytes(Rw(kVsockMaxPayload)) + payload);
  EXPECT_TRUE(ParseVsockPacket(guest.memory_ref(), chain).ok());
}

}  // namespace
}  // namespace hearth::virtio
