// MessageChannel: framed messages with attached fds over a SOCK_SEQPACKET
// unix socket — the transport under the agent <-> VMM control channel.
//
// Every datagram starts with a fixed 16-byte header:
//   magic "HRTH" | version u16 | kind u16 | payload length u32 | fd count u32
// The header exists because an empty protobuf serialises to zero bytes, and a
// zero-byte datagram is indistinguishable from EOF; it also lets the receiver
// refuse a foreign, truncated or mismatched message before parsing it, and
// detect descriptors that were announced but did not arrive.
#ifndef HEARTH_COMMON_MESSAGE_CHANNEL_H_
#define HEARTH_COMMON_MESSAGE_CHANNEL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/unique_fd.h"

namespace hearth {

class MessageChannel {
 public:
  static constexpr uint32_t kMagic = 0x48545248;  // "HRTH" little-endian
  static constexpr uint16_t kVersion = 1;
  static constexpr size_t kHeaderSize = 16;
  // Below the default unix socket send buffer (net.core.wmem_default, 208 KiB),
  // which bounds a single SOCK_SEQPACKET datagram.
  static constexpr size_t kMaxPayload = 128 * 1024;
  static constexpr size_t kMaxFds = 64;

  struct Message {
    uint16_t kind = 0;
    std::string payload;
    std::vector<UniqueFd> fds;
  };

  // A connected pair (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)).
  static absl::StatusOr<std::pair<MessageChannel, MessageChannel>> CreatePair();

  MessageChannel() = default;
  explicit MessageChannel(UniqueFd socket) : socket_(std::move(socket)) {}

  // Sends one framed message. `payload` may be empty.
  absl::Status Send(uint16_t kind, absl::string_view payload, absl::Span<const int> fds = {}) const;

  // Receives one message. Returns nullopt when the peer has closed the
  // channel. A malformed datagram (bad magic, other version, truncated,
  // oversize, fd count mismatch) is consumed and reported as
  // INVALID_ARGUMENT (FAILED_PRECONDITION for another version) whose
  // message says what was wrong; its fds are closed and the channel stays
  // usable for the next message. On a non-blocking socket with nothing
  // pending the error is UNAVAILABLE.
  absl::StatusOr<std::optional<Message>> Receive() const;

  int fd() const { return socket_.get(); }
  bool valid() const { return socket_.valid(); }

  // Exposed for tests and fuzzers: header encoding and validation.
  static std::string EncodeHeader(uint16_t version, uint16_t kind, uint32_t payload_length,
                                  uint32_t fd_count);
  // Checks a whole received datagram (header + payload) against its fds.
  static absl::StatusOr<Message> Decode(absl::string_view datagram, std::vector<UniqueFd> fds);

 private:
  UniqueFd socket_;
};

}  // namespace hearth

#endif  // HEARTH_COMMON_MESSAGE_CHANNEL_H_
