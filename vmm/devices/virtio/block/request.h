// Parsing a virtio-blk request (virtio 1.2 §5.2.6) from a descriptor chain:
// a pure function of the chain, guest memory and the disk's geometry, so it
// can be unit-tested and fuzzed without a disk.
//
// Layout, as streams (any descriptor arrangement): readable = 16-byte header
// {u32 type, u32 reserved, u64 sector} [+ data for OUT]; writable = [data
// for IN / GET_ID] + 1 status byte (the last writable byte).
#ifndef HEARTH_VMM_DEVICES_VIRTIO_BLOCK_REQUEST_H_
#define HEARTH_VMM_DEVICES_VIRTIO_BLOCK_REQUEST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio {

inline constexpr uint32_t kBlkTIn = 0;
inline constexpr uint32_t kBlkTOut = 1;
inline constexpr uint32_t kBlkTFlush = 4;
inline constexpr uint32_t kBlkTGetId = 8;

inline constexpr uint8_t kBlkSOk = 0;
inline constexpr uint8_t kBlkSIoErr = 1;
inline constexpr uint8_t kBlkSUnsupp = 2;

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kBlkIdBytes = 20;

struct BlockRequest {
  uint32_t type = 0;
  uint64_t sector = 0;
  // Bytes of data: readable after the header (OUT), writable before the
  // status byte (IN, GET_ID).
  uint64_t data_length = 0;
};

// The request, or an error whose message says what is wrong. Errors come in
// two kinds, told apart by `*status_writable`: if the chain has a writable
// status byte the device reports `*error_status` there (IOERR / UNSUPP);
// if not, the chain is unusable and is completed with length 0.
struct BlockParseError {
  bool status_writable = false;
  uint8_t status = kBlkSIoErr;
  std::string reason;
};

// `capacity` in sectors.
absl::StatusOr<BlockRequest> ParseBlockRequest(const memory::GuestMemory& memory,
                                               const DescriptorChain& chain, uint64_t capacity,
                                               bool read_only, BlockParseError* error);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_BLOCK_REQUEST_H_
