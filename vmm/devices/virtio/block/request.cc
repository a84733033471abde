#include "vmm/devices/virtio/block/request.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {
namespace {

struct __attribute__((packed)) RawHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RawHeader) == 16);

absl::Status Fail(BlockParseError* error, bool status_writable, uint8_t status,
                  std::string reason) {
  error->status_writable = status_writable;
  error->status = status;
  error->reason = reason;
  return absl::InvalidArgumentError(reason);
}

}  // namespace

absl::StatusOr<BlockRequest> ParseBlockRequest(const memory::GuestMemory& memory,
                                               const DescriptorChain& chain, uint64_t capacity,
                                               bool read_only, BlockParseError* error) {
  const bool has_status = chain.writable_bytes >= 1;
  if (!has_status) {
    return Fail(error, false, kBlkSIoErr, "no writable status byte");
  }
  RawHeader header;
  if (chain.readable_bytes < sizeof(header) ||
      !ReadFromChain(memory, chain, 0,
                     absl::MakeSpan(reinterpret_cast<uint8_t*>(&header), sizeof(header)))
           .ok()) {
    return Fail(error, true, kBlkSIoErr, "request header shorter than 16 bytes");
  }
  BlockRequest request;
  request.type = header.type;
  request.sector = header.sector;
  const uint64_t writable_data = chain.writable_bytes - 1;
  const uint64_t readable_data = chain.readable_bytes - sizeof(header);
  auto check_range = [&](uint64_t bytes) -> absl::Status {
    if (bytes % kSectorSize != 0) {
      return Fail(error, true, kBlkSIoErr,
                  absl::StrCat("data length ", bytes, " is not a multiple of 512"));
    }
    const uint64_t sectors = bytes / kSectorSize;
    if (request.sector > capacity || sectors > capacity - request.sector) {
      return Fail(error, true, kBlkSIoErr,
                  absl::StrCat("sectors [", request.sector, ", +", sectors,
                               ") are beyond the capacity of ", capacity));
    }
    return absl::OkStatus();
  };
  switch (request.type) {
    case kBlkTIn: {
      request.data_length = writable_data;
      absl::Status status = check_range(writable_data);
      if (!status.ok()) return status;
      return request;
    }
    case kBlkTOut: {
      if (read_only) {
        return Fail(error, true, kBlkSIoErr, "write to a read-only drive");
      }
      request.data_length = readable_data;
      absl::Status status = check_range(readable_data);
      if (!status.ok()) return status;
      return request;
    }
    case kBlkTFlush:
      return request;
    case kBlkTGetId:
      if (writable_data < kBlkIdBytes) {
        return Fail(error, true, kBlkSIoErr, "GET_ID buffer shorter than 20 bytes");
      }
      request.data_length = kBlkIdBytes;
      return request;
    default:
      return Fail(error, true, kBlkSUnsupp,
                  absl::StrCat("unsupported request type ", request.type));
  }
}

}  // namespace hearth::virtio
