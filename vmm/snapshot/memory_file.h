// The snapshot memory file: guest RAM region after region (the layout is
// recorded in the state file), written sparsely, and mapped back privately
// (copy-on-write) on restore, so that a restored VM reads its pages from
// the file only as it touches them and never writes to it.
//
// Full: every page; pages that are all zero are left as holes.
// Diff: only the pages marked dirty (KVM's dirty log plus the pages the
//   device models wrote), every one of them written even if zero, holes
//   everywhere else. Merging a Diff onto a copy of its base (ApplyDiff)
//   copies the Diff's data extents (SEEK_DATA/SEEK_HOLE) over the base.
#ifndef HEARTH_VMM_SNAPSHOT_MEMORY_FILE_H_
#define HEARTH_VMM_SNAPSHOT_MEMORY_FILE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::snapshot {

struct MemoryWriteStats {
  uint64_t pages_total = 0;
  uint64_t pages_written = 0;
  uint64_t bytes_written = 0;
};

// Where each region of `memory` goes in the file (back to back).
std::vector<hearth::vmm::v1::MemoryRegion> MemoryLayout(const memory::GuestMemory& memory);

// Writes every non-zero page of `memory` to `fd` (sized to the total first).
absl::StatusOr<MemoryWriteStats> WriteFullMemory(const memory::GuestMemory& memory, int fd);

// Writes the pages whose bit is set in dirty[region] (one bit per 4 KiB page).
absl::StatusOr<MemoryWriteStats> WriteDiffMemory(const memory::GuestMemory& memory,
                                                 const std::vector<std::vector<uint64_t>>& dirty,
                                                 int fd);

// Maps `fd` as guest RAM, MAP_PRIVATE, with the recorded layout. The file
// must be exactly `expected_size` bytes and every region page-aligned and
// inside it.
absl::StatusOr<memory::GuestMemory> MapMemoryFile(
    int fd, const std::vector<hearth::vmm::v1::MemoryRegion>& layout, uint64_t expected_size);

// Copies `from` to `to` (truncated first) keeping holes.
absl::Status CopySparse(int from, int to);
// Writes every data extent of the Diff memory file `diff` into `target`.
absl::Status ApplyDiff(int diff, int target);

}  // namespace hearth::snapshot

#endif  // HEARTH_VMM_SNAPSHOT_MEMORY_FILE_H_
