#include "common/fd_passing.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

struct Pair {
  UniqueFd a, b;
};

Pair SeqPacketPair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

TEST(FdPassing, DataAndFdsArriveTogether) {
  Pair p = SeqPacketPair();
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  ASSERT_TRUE(SendWithFds(p.a.get(), "hello", {w.get()}).ok());
  absl::StatusOr<ReceivedMessage> m = ReceiveWithFds(p.b.get(), 100, 4);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->data, "hello");
  ASSERT_EQ(m->fds.size(), 1u);
  EXPECT_TRUE(::fcntl(m->fds[0].get(), F_GETFD) & FD_CLOEXEC);
  // The received fd is the pipe's write end: bytes written there arrive at r.
  ASSERT_EQ(::write(m->fds[0].get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(r.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(FdPassing, EofIsReported) {
  Pair p = SeqPacketPair();
  p.a.Reset();
  absl::StatusOr<ReceivedMessage> m = ReceiveWithFds(p.b.get(), 100, 4);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->eof);
}

TEST(FdPassing, OversizeDatagramIsTruncationError) {
  Pair p = SeqPacketPair();
  ASSERT_TRUE(SendWithFds(p.a.get(), std::string(200, 'z'), {}).ok());
  absl::StatusOr<ReceivedMessage> m = ReceiveWithFds(p.b.get(), 100, 4);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("truncated"), absl::string_view::npos);
}

TEST(FdPassing, TooManyFdsAreRefusedAndClosed) {
  Pair p = SeqPacketPair();
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_TRUE(SendWithFds(p.a.get(), "m", {null_fd, null_fd, null_fd}).ok());
  ::close(null_fd);
  // Count open fds before and after: the refused fds must not leak.
  auto count_fds = [] {
    int n = 0;
    for (int fd = 0; fd < 1024; ++fd) n += ::fcntl(fd, F_GETFD) >= 0;
    return n;
  };
  int before = count_fds();
  absl::StatusOr<ReceivedMessage> m = ReceiveWithFds(p.b.get(), 100, 1);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("more than 1 fds"), absl::string_view::npos) << m.status();
  EXPECT_EQ(count_fds(), before);
}

TEST(FdPassing, BadArgumentsAndClosedSockets) {
  EXPECT_EQ(SendWithFds(3, "x", {-1}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<int> many(kMaxFdsPerMessage + 1, 0);
  EXPECT_EQ(SendWithFds(3, "x", many).code(), absl::StatusCode::kInvalidArgument);
  Pair p = SeqPacketPair();
  int raw = p.a.Release();
  ::close(raw);
  absl::Status s = SendWithFds(raw, "x", {});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("sendmsg"), absl::string_view::npos);
  p.b.Reset();
  EXPECT_FALSE(ReceiveWithFds(raw, 10, 1).ok());
}

TEST(FdPassing, NonBlockingEmptySocketIsUnavailable) {
  Pair p = SeqPacketPair();
  ASSERT_EQ(::fcntl(p.b.get(), F_SETFL, O_NONBLOCK), 0);
  EXPECT_EQ(ReceiveWithFds(p.b.get(), 10, 1).status().code(), absl::StatusCode::kUnavailable);
}

TEST(UnixSocketAddress, FitsOrSaysWhyNot) {
  absl::StatusOr<sockaddr_un> address = UnixSocketAddress("/run/hearth/vm1/control.sock", "x");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->sun_family, AF_UNIX);
  EXPECT_STREQ(address->sun_path, "/run/hearth/vm1/control.sock");
  EXPECT_TRUE(UnixSocketAddress(std::string(107, 'a'), "x").ok());
  for (const std::string& bad : {std::string(108, 'a'), std::string()}) {
    absl::StatusOr<sockaddr_un> refused = UnixSocketAddress(bad, "vsock.uds_path");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(refused.status().message(), "vsock.uds_path"))
        << refused.status();
  }
}

}  // namespace
}  // namespace hearth
