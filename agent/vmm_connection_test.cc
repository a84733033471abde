#include "agent/vmm_connection.h"

#include <sys/socket.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

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

namespace hearth::agent {
namespace {

control::Response Reply(uint64_t id, int code = 0) {
  control::Response response;
  response.set_id(id);
  response.set_code(code);
  return response;
}

TEST(VmmConnectionAsync, AnswersCompleteTheirCallsInOrder) {
  auto pair = MessageChannel::CreatePair();
  ASSERT_TRUE(pair.ok());
  VmmConnection connection(std::move(pair->first));
  std::vector<std::string> log;
  const absl::Time later = absl::Now() + absl::Hours(1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(connection
                    .Start(control::Request(), {}, later,
                           [&log, i](absl::StatusOr<control::Response> r) {
                             log.push_back(absl::StrCat(i, ":", r.ok() ? r->code() : -1));
                           })
                    .ok());
  }
  EXPECT_EQ(connection.pending(), 3u);
  // Answers for calls 3 and 1 (ids start at 1), and one for no call.
  for (uint64_t id : {3, 1, 99}) {
    ASSERT_TRUE(pair->second.Send(control::KIND_RESPONSE, Reply(id, 5).SerializeAsString()).ok());
  }
  ASSERT_TRUE(connection.ReadAvailable().ok());
  for (auto& run : connection.TakeCompleted()) run();
  EXPECT_EQ(log, (std::vector<std::string>{"0:5", "2:5"}));
  EXPECT_EQ(connection.pending(), 1u);
  EXPECT_FALSE(connection.TakeResponse(99).has_value());  // dropped, not kept forever
}

TEST(VmmConnectionAsync, DeadlinesAndTheEnd) {
  auto pair = MessageChannel::CreatePair();
  ASSERT_TRUE(pair.ok());
  VmmConnection connection(std::move(pair->first));
  const absl::Time now = absl::Now();
  int calls = 0;
  auto count = [&calls](absl::StatusOr<control::Response>) { ++calls; };
  ASSERT_TRUE(connection.Start(control::Request(), {}, now - absl::Seconds(1), count).ok());
  ASSERT_TRUE(connection.Start(control::Request(), {}, now + absl::Hours(1), count).ok());
  EXPECT_EQ(connection.TakeExpired(now).size(), 1u);
  EXPECT_EQ(connection.pending(), 1u);
  EXPECT_EQ(connection.TakeAllPending().size(), 1u);
  EXPECT_EQ(connection.pending(), 0u);
  EXPECT_EQ(calls, 0);  // the caller runs what it took

  // A closed channel refuses new calls without keeping them.
  pair->second = MessageChannel();
  EXPECT_FALSE(connection.ReadAvailable().ok());
  EXPECT_FALSE(connection.Start(control::Request(), {}, now, count).ok());
  EXPECT_EQ(connection.pending(), 0u);
}

}  // namespace
}  // namespace hearth::agent
