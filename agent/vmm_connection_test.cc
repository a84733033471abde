#include "agent/vmm_connection.h"

#include <sys/socket.h>

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

// The VMM side of the channel: writes raw datagrams or framed messages.
struct Pair {
  Pair() {
    auto pair = MessageChannel::CreatePair();
    EXPECT_TRUE(pair.ok());
    connection = std::make_unique<VmmConnection>(std::move(pair->first));
    vmm = std::move(pair->second);
  }
  std::unique_ptr<VmmConnection> connection;
  MessageChannel vmm;
};

control::Response Answer(uint64_t id) {
  control::Response response;
  response.set_id(id);
  return response;
}

TEST(VmmConnection, MalformedMessagesAreDroppedAndReadingGoesOn) {
  Pair p;
  // Bad framing, a payload that does not parse, an unknown kind, then the
  // answer the agent waits for.
  ASSERT_EQ(::send(p.vmm.fd(), "garbage", 7, 0), 7);
  ASSERT_TRUE(p.vmm.Send(control::KIND_RESPONSE, std::string("\xff\xff\xff", 3)).ok());
  ASSERT_TRUE(p.vmm.Send(77, "").ok());
  ASSERT_TRUE(p.vmm.Send(control::KIND_RESPONSE, Answer(5).SerializeAsString()).ok());
  EXPECT_TRUE(p.connection->ReadAvailable().ok());
  EXPECT_EQ(p.connection->malformed(), 3u);
  EXPECT_EQ(p.connection->last_malformed(), "message kind 77");
  EXPECT_FALSE(p.connection->closed());
  std::optional<control::Response> response = p.connection->TakeResponse(5);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->id(), 5u);
}

TEST(VmmConnection, ClosedChannelIsUnavailable) {
  Pair p;
  control::Event event;
  event.mutable_ready()->set_protocol_version(1);
  ASSERT_TRUE(p.vmm.Send(control::KIND_EVENT, event.SerializeAsString()).ok());
  p.vmm = MessageChannel();  // the VMM exits
  absl::Status read = p.connection->ReadAvailable();
  EXPECT_TRUE(absl::IsUnavailable(read)) << read;
  EXPECT_TRUE(p.connection->closed());
  EXPECT_EQ(p.connection->malformed(), 0u);
  std::optional<control::Event> got = p.connection->TakeEvent();
  ASSERT_TRUE(got.has_value()) << "events before the close are kept";
  EXPECT_TRUE(got->has_ready());
}

}  // namespace
}  // namespace hearth::agent
