// virtio-vsock packets (virtio 1.2 §5.10.6): a 44-byte little-endian header,
// then `len` bytes of payload for RW packets. Parsing from a tx chain is a
// pure function so it can be unit-tested and fuzzed.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_VSOCK_PACKET_H_
#define HEARTH_VMM_DEVICES_VIRTIO_VSOCK_PACKET_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio {

struct __attribute__((packed)) VsockHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == 44);

inline constexpr uint64_t kVsockHostCid = 2;
inline constexpr uint16_t kVsockTypeStream = 1;

inline constexpr uint16_t kVsockOpRequest = 1;
inline constexpr uint16_t kVsockOpResponse = 2;
inline constexpr uint16_t kVsockOpRst = 3;
inline constexpr uint16_t kVsockOpShutdown = 4;
inline constexpr uint16_t kVsockOpRw = 5;
inline constexpr uint16_t kVsockOpCreditUpdate = 6;
inline constexpr uint16_t kVsockOpCreditRequest = 7;

inline constexpr uint32_t kVsockShutdownRcv = 1;
inline constexpr uint32_t kVsockShutdownSend = 2;

// Largest RW payload accepted from or sent to the guest in one packet.
inline constexpr uint32_t kVsockMaxPayload = 64 * 1024;

// A packet from the guest: the header, and where its payload starts in the
// chain's readable stream (always right after the header).
struct VsockPacket {
  VsockHeader header;
};

// Reads and checks the header: enough readable bytes, payload length within
// the chain and within kVsockMaxPayload.
absl::StatusOr<VsockPacket> ParseVsockPacket(const memory::GuestMemory& memory,
                                             const DescriptorChain& chain);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_VSOCK_PACKET_H_
