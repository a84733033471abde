#include "common/message_channel.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/fd_passing.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

using Channels = std::pair<MessageChannel, MessageChannel>;

TEST(MessageChannel, RoundTripWithEmptyPayloadAndFds) {
  Channels c = *MessageChannel::CreatePair();
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_TRUE(c.first.Send(7, "", {null_fd}).ok());
  ::close(null_fd);
  auto m = c.second.Receive();
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(m->has_value());  // an empty payload is not EOF
  EXPECT_EQ((*m)->kind, 7);
  EXPECT_EQ((*m)->payload, "");
  EXPECT_EQ((*m)->fds.size(), 1u);
}

TEST(MessageChannel, EofIsNullopt) {
  Channels c = *MessageChannel::CreatePair();
  c.first = MessageChannel();
  auto m = c.second.Receive();
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->has_value());
}

TEST(MessageChannel, OversizeSendIsRefused) {
  Channels c = *MessageChannel::CreatePair();
  std::string big(MessageChannel::kMaxPayload + 1, 'x');
  EXPECT_EQ(c.first.Send(1, big).code(), absl::StatusCode::kInvalidArgument);
}

// Raw datagrams that a confused or hostile peer could send. Each is refused
// with a message, and the next good message still arrives.
TEST(MessageChannel, MalformedDatagramsAreErrorsAndChannelSurvives) {
  Channels c = *MessageChannel::CreatePair();
  int raw = c.first.fd();
  struct Case {
    std::string datagram;
    const char* expected;
  };
  std::string good_header = MessageChannel::EncodeHeader(1, 1, 3, 0);
  std::vector<Case> cases = {
      {"abc", "truncated message"},
      {std::string(16, '\0'), "bad message magic"},
      {MessageChannel::EncodeHeader(9, 1, 0, 0), "version 9 is not supported"},
      {good_header + "ab", "announces 3 payload bytes but 2 arrived"},
      {MessageChannel::EncodeHeader(1, 1, 0, 2), "announces 2 fds but 0 arrived"},
  };
  for (const Case& bad : cases) {
    ASSERT_TRUE(SendWithFds(raw, bad.datagram, {}).ok());
    auto m = c.second.Receive();
    ASSERT_FALSE(m.ok()) << bad.expected;
    EXPECT_NE(m.status().message().find(bad.expected), absl::string_view::npos) << m.status();
  }
  // Oversize on the wire (bypassing Send's check).
  std::string huge =
      MessageChannel::EncodeHeader(1, 1, 0, 0) + std::string(MessageChannel::kMaxPayload + 1, 'y');
  ASSERT_TRUE(SendWithFds(raw, huge, {}).ok());
  EXPECT_NE(c.second.Receive().status().message().find("truncated"), absl::string_view::npos);
  ASSERT_TRUE(c.first.Send(2, "ok").ok());
  auto m = c.second.Receive();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->payload, "ok");
}

TEST(MessageChannel, ClosedChannelIsAnError) {
  MessageChannel empty;
  EXPECT_EQ(empty.Receive().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(empty.Send(1, "x").ok());
}

}  // namespace
}  // namespace hearth
