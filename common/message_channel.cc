#include "common/message_channel.h"

#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"

namespace hearth {
namespace {

template <typename T>
void Put(std::string* out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out->append(bytes, sizeof(T));
}

template <typename T>
T Get(absl::string_view in, size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof(T));
  return value;
}

}  // namespace

absl::StatusOr<std::pair<MessageChannel, MessageChannel>> MessageChannel::CreatePair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) {
    return ErrnoStatus("socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  return std::make_pair(MessageChannel(UniqueFd(fds[0])), MessageChannel(UniqueFd(fds[1])));
}

std::string MessageChannel::EncodeHeader(uint16_t version, uint16_t kind, uint32_t payload_length,
                                         uint32_t fd_count) {
  std::string header;
  header.reserve(kHeaderSize);
  Put<uint32_t>(&header, kMagic);
  Put<uint16_t>(&header, version);
  Put<uint16_t>(&header, kind);
  Put<uint32_t>(&header, payload_length);
  Put<uint32_t>(&header, fd_count);
  return header;
}

absl::Status MessageChannel::Send(uint16_t kind, absl::string_view payload,
                                  absl::Span<const int> fds) const {
  if (payload.size() > kMaxPayload) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message payload of ", payload.size(), " bytes exceeds the ", kMaxPayload, "-byte limit"));
  }
  if (fds.size() > kMaxFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("message carries ", fds.size(), " fds; the limit is ", kMaxFds));
  }
  std::string datagram = EncodeHeader(kVersion, kind, static_cast<uint32_t>(payload.size()),
                                      static_cast<uint32_t>(fds.size()));
  datagram.append(payload.data(), payload.size());
  return SendWithFds(socket_.get(), datagram, fds);
}

absl::StatusOr<MessageChannel::Message> MessageChannel::Decode(absl::string_view datagram,
                                                               std::vector<UniqueFd> fds) {
  if (datagram.size() < kHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated message: ", datagram.size(), " bytes, header needs ", kHeaderSize));
  }
  uint32_t magic = Get<uint32_t>(datagram, 0);
  if (magic != kMagic) {
    return absl::InvalidArgumentError(absl::StrCat("bad message magic 0x", absl::Hex(magic)));
  }
  uint16_t version = Get<uint16_t>(datagram, 4);
  if (version != kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("message version ", version, " is not supported (expected ", kVersion, ")"));
  }
  uint32_t length = Get<uint32_t>(datagram, 8);
  uint32_t fd_count = Get<uint32_t>(datagram, 12);
  if (length != datagram.size() - kHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat("message header announces ", length,
                                                   " payload bytes but ",
                                                   datagram.size() - kHeaderSize, " arrived"));
  }
  if (fd_count != fds.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("message header announces ", fd_count, " fds but ", fds.size(), " arrived"));
  }
  Message message;
  message.kind = Get<uint16_t>(datagram, 6);
  message.payload = std::string(datagram.substr(kHeaderSize));
  message.fds = std::move(fds);
  return message;
}

absl::StatusOr<std::optional<MessageChannel::Message>> MessageChannel::Receive() const {
  if (!socket_.valid()) {
    return absl::FailedPreconditionError("receive on a closed channel");
  }
  auto received = ReceiveWithFds(socket_.get(), kHeaderSize + kMaxPayload, kMaxFds);
  if (!received.ok()) return received.status();
  if (received->eof) return std::nullopt;
  auto message = Decode(received->data, std::move(received->fds));
  if (!message.ok()) return message.status();
  return std::optional<Message>(std::move(*message));
}

}  // namespace hearth
