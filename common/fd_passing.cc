#include "common/fd_passing.h"

#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth {
namespace {

// Collects every SCM_RIGHTS descriptor in `msg` into owners, so that none
// leaks whatever happens next.
std::vector<UniqueFd> TakeFds(struct msghdr* msg) {
  std::vector<UniqueFd> fds;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      // CMSG_DATA may be unaligned for int; copy out.
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd);
    }
  }
  return fds;
}

}  // namespace

absl::Status SendWithFds(int socket, absl::string_view data, absl::Span<const int> fds) {
  if (fds.size() > kMaxFdsPerMessage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot send ", fds.size(), " fds in one message (max ", kMaxFdsPerMessage, ")"));
  }
  for (int fd : fds) {
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat("cannot send invalid fd ", fd));
    }
  }
  struct iovec iov = {const_cast<char*>(data.data()), data.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(fds.size() * sizeof(int)));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t n = RetryOnEintr([&] { return ::sendmsg(socket, &msg, MSG_NOSIGNAL); });
  if (n < 0) {
    return ErrnoStatus(
        absl::StrCat("sendmsg(fd=", socket, ", bytes=", data.size(), ", fds=", fds.size(), ")"));
  }
  if (static_cast<size_t>(n) != data.size()) {
    return absl::DataLossError(absl::StrCat("sendmsg sent ", n, " of ", data.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReceivedMessage> ReceiveWithFds(int socket, size_t max_bytes, size_t max_fds) {
  if (max_fds > kMaxFdsPerMessage) max_fds = kMaxFdsPerMessage;
  ReceivedMessage received;
  received.data.resize(max_bytes);
  struct iovec iov = {received.data.data(), received.data.size()};
  // One slot more than allowed, so that "too many fds" is told apart from
  // "exactly max_fds" without relying on MSG_CTRUNC alone.
  std::vector<char> control(CMSG_SPACE((max_fds + 1) * sizeof(int)));
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n = RetryOnEintr([&] { return ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::UnavailableError("recvmsg: would block");
    }
    return ErrnoStatus(absl::StrCat("recvmsg(fd=", socket, ")"));
  }
  received.fds = TakeFds(&msg);
  if (msg.msg_flags & MSG_TRUNC) {
    return absl::InvalidArgumentError(
        absl::StrCat("message truncated: longer than the ", max_bytes, "-byte limit"));
  }
  if ((msg.msg_flags & MSG_CTRUNC) || received.fds.size() > max_fds) {
    return absl::InvalidArgumentError(
        absl::StrCat("message carried more than ", max_fds, " fds; all were closed"));
  }
  received.data.resize(static_cast<size_t>(n));
  received.eof = n == 0 && received.fds.empty();
  return received;
}

absl::StatusOr<sockaddr_un> UnixSocketAddress(const std::string& path, absl::string_view what) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", path, "\" does not fit a unix socket address (", path.size(),
                     " bytes; at most ", sizeof(address.sun_path) - 1, ")"));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

}  // namespace hearth
