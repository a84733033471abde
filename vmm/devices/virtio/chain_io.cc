#include "vmm/devices/virtio/chain_io.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hearth::virtio {
namespace {

// Visits the pieces of [offset, offset + length) of one direction's stream:
// visit(guest address, piece length, position in the range).
template <typename Visit>
absl::Status ForEachPiece(const DescriptorChain& chain, bool writable, uint64_t offset,
                          uint64_t length, Visit visit) {
  uint64_t position = 0;  // in the stream
  uint64_t done = 0;
  for (const Descriptor& d : chain.descriptors) {
    if (d.writable != writable) continue;
    if (done == length) break;
    uint64_t end = position + d.length;
    if (end > offset) {
      uint64_t start_in = offset > position ? offset - position : 0;
      uint64_t piece = std::min<uint64_t>(d.length - start_in, length - done);
      RETURN_IF_ERROR(visit(d.address + start_in, piece, done));
      done += piece;
    }
    position = end;
  }
  if (done < length) {
    return absl::InvalidArgumentError(
        absl::StrCat("chain's ", writable ? "writable" : "readable", " part has ",
                     writable ? chain.writable_bytes : chain.readable_bytes, " bytes; needed ",
                     offset + length));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<iovec>> Iovecs(const memory::GuestMemory& memory,
                                          const DescriptorChain& chain, bool writable,
                                          uint64_t offset, uint64_t length) {
  std::vector<iovec> iovecs;
  RETURN_IF_ERROR(ForEachPiece(chain, writable, offset, length,
                               [&](uint64_t address, uint64_t piece, uint64_t) -> absl::Status {
                                 if (piece == 0) return absl::OkStatus();
                                 ASSIGN_OR_RETURN(uint8_t * host,
                                                  memory.HostAddress(address, piece));
                                 iovecs.push_back({host, static_cast<size_t>(piece)});
                                 return absl::OkStatus();
                               }));
  return iovecs;
}

}  // namespace

absl::Status ReadFromChain(const memory::GuestMemory& memory, const DescriptorChain& chain,
                           uint64_t offset, absl::Span<uint8_t> destination) {
  return ForEachPiece(chain, false, offset, destination.size(),
                      [&](uint64_t address, uint64_t piece, uint64_t at) {
                        return memory.Read(address, destination.data() + at, piece);
                      });
}

absl::Status WriteToChain(memory::GuestMemory* memory, const DescriptorChain& chain,
                          uint64_t offset, absl::Span<const uint8_t> source) {
  return ForEachPiece(chain, true, offset, source.size(),
                      [&](uint64_t address, uint64_t piece, uint64_t at) {
                        return memory->Write(address, source.data() + at, piece);
                      });
}

absl::StatusOr<std::vector<iovec>> ReadableIovecs(const memory::GuestMemory& memory,
                                                  const DescriptorChain& chain, uint64_t offset,
                                                  uint64_t length) {
  return Iovecs(memory, chain, false, offset, length);
}

absl::StatusOr<std::vector<iovec>> WritableIovecs(const memory::GuestMemory& memory,
                                                  const DescriptorChain& chain, uint64_t offset,
                                                  uint64_t length) {
  return Iovecs(memory, chain, true, offset, length);
}

void MarkWritableDirty(memory::GuestMemory* memory, const DescriptorChain& chain, uint64_t length) {
  if (!memory->dirty_tracking()) return;
  // Cannot fail: the length is clamped to the chain's and the visit always
  // succeeds.
  (void)ForEachPiece(chain, true, 0, std::min(length, chain.writable_bytes),
                     [&](uint64_t address, uint64_t piece, uint64_t) {
                       memory->MarkDirty(address, piece);
                       return absl::OkStatus();
                     });
}

}  // namespace hearth::virtio
