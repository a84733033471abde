// Sending and receiving one message with file descriptors attached
// (SCM_RIGHTS ancillary data) over a unix socket. On SOCK_SEQPACKET, one call
// is exactly one datagram. And a unix socket's address.
#ifndef HEARTH_COMMON_FD_PASSING_H_
#define HEARTH_COMMON_FD_PASSING_H_

#include <sys/un.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/unique_fd.h"

namespace hearth {

// The kernel's limit on descriptors per SCM_RIGHTS message (SCM_MAX_FD).
inline constexpr size_t kMaxFdsPerMessage = 253;

// Sends `data` with `fds` attached (the fds stay open in the caller).
// Fails if the message would be cut short or `fds` exceeds kMaxFdsPerMessage.
absl::Status SendWithFds(int socket, absl::string_view data, absl::Span<const int> fds);

struct ReceivedMessage {
  std::string data;
  std::vector<UniqueFd> fds;  // close-on-exec (MSG_CMSG_CLOEXEC)
  bool eof = false;           // the read returned 0 bytes and no fds
};

// Receives one message of at most `max_bytes` carrying at most `max_fds`
// descriptors. A datagram longer than `max_bytes` (MSG_TRUNC) or with more
// descriptors than fit (MSG_CTRUNC) is an error; any descriptors that did
// arrive are closed. A blocking socket with nothing to read blocks; a
// non-blocking one fails with UNAVAILABLE ("would block").
absl::StatusOr<ReceivedMessage> ReceiveWithFds(int socket, size_t max_bytes, size_t max_fds);

// The address of the unix socket at `path`, for bind or connect. A path
// that does not fit sun_path (107 bytes and the NUL) is INVALID_ARGUMENT
// naming `what`, never a truncated name.
absl::StatusOr<sockaddr_un> UnixSocketAddress(const std::string& path, absl::string_view what);

}  // namespace hearth

#endif  // HEARTH_COMMON_FD_PASSING_H_
