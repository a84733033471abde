#include "vmm/devices/virtio/vsock/packet.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {

absl::StatusOr<VsockPacket> ParseVsockPacket(const memory::GuestMemory& memory,
                                             const DescriptorChain& chain) {
  if (chain.readable_bytes < sizeof(VsockHeader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("vsock packet of ", chain.readable_bytes, " bytes has no 44-byte header"));
  }
  VsockPacket packet;
  RETURN_IF_ERROR(ReadFromChain(
      memory, chain, 0,
      absl::MakeSpan(reinterpret_cast<uint8_t*>(&packet.header), sizeof(VsockHeader))));
  const uint32_t len = packet.header.len;
  if (len > kVsockMaxPayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("vsock payload of ", len, " bytes exceeds ", kVsockMaxPayload));
  }
  if (len > chain.readable_bytes - sizeof(VsockHeader)) {
    return absl::InvalidArgumentError(absl::StrCat("vsock header announces ", len,
                                                   " payload bytes; the chain has ",
                                                   chain.readable_bytes - sizeof(VsockHeader)));
  }
  return packet;
}

}  // namespace hearth::virtio
