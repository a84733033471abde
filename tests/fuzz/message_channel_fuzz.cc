// MessageChannel::Decode (common/message_channel.h): a datagram from the
// agent <-> VMM control socket and the fds that came with it. Checks that a
// decoded message is exactly what the header announced and that every fd
// is either handed over or closed, never leaked.
//
// Input: fd count u8 (0..9), then the datagram.
#include <fcntl.h>
#include <sys/eventfd.h>

#include <string>
#include <vector>

#include "common/message_channel.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hearth::MessageChannel;
  hearth::fuzz::FuzzInput input(data, size);
  const size_t fd_count = input.Get<uint8_t>() % 10;
  const std::string datagram = input.Rest();

  std::vector<hearth::UniqueFd> fds;
  std::vector<int> raw;
  for (size_t i = 0; i < fd_count; ++i) {
    fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    FUZZ_CHECK(fds.back().valid());
    raw.push_back(fds.back().get());
  }
  {
    auto message = MessageChannel::Decode(datagram, std::move(fds));
    if (message.ok()) {
      FUZZ_CHECK(datagram.size() >= MessageChannel::kHeaderSize);
      FUZZ_CHECK(message->payload == datagram.substr(MessageChannel::kHeaderSize));
      FUZZ_CHECK(message->fds.size() == fd_count);
      for (size_t i = 0; i < fd_count; ++i) FUZZ_CHECK(message->fds[i].get() == raw[i]);
      // Re-encoding the header gives back the datagram's.
      FUZZ_CHECK(MessageChannel::EncodeHeader(MessageChannel::kVersion, message->kind,
                                              static_cast<uint32_t>(message->payload.size()),
                                              static_cast<uint32_t>(fd_count)) ==
                 datagram.substr(0, MessageChannel::kHeaderSize));
    } else {
      FUZZ_CHECK(!message.status().message().empty());
      // Refused: its fds are closed already.
      for (int fd : raw) FUZZ_CHECK(!IsOpen(fd));
    }
  }
  for (int fd : raw) FUZZ_CHECK(!IsOpen(fd));

  // Whatever EncodeHeader frames, Decode accepts.
  const uint16_t kind = static_cast<uint16_t>(datagram.size());
  std::string framed = MessageChannel::EncodeHeader(MessageChannel::kVersion, kind,
                                                    static_cast<uint32_t>(datagram.size()), 0) +
                       datagram;
  auto round_trip = MessageChannel::Decode(framed, {});
  FUZZ_CHECK(round_trip.ok());
  FUZZ_CHECK(round_trip->kind == kind && round_trip->payload == datagram);
  return 0;
}
