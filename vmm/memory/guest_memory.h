// GuestMemory: the guest's RAM as seen from the VMM. Every access from the
// VMM to a guest-physical address goes through here and is bounds-checked:
// a guest-supplied address or length that leaves guest RAM (or wraps around)
// yields an error, never a host access outside the mappings.
//
// RAM is laid out around the 32-bit MMIO hole (layout.h): the first
// min(size, 3 GiB) bytes at guest address 0, the rest from 4 GiB.
#ifndef HEARTH_VMM_MEMORY_GUEST_MEMORY_H_
#define HEARTH_VMM_MEMORY_GUEST_MEMORY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/mmap_region.h"

namespace hearth::memory {

// A guest-physical range [start, start + size).
struct GuestRange {
  uint64_t start;
  uint64_t size;
  uint64_t end() const { return start + size; }
};

class GuestMemory {
 public:
  struct Region {
    uint64_t guest_address;
    MmapRegion mapping;
  };

  struct Options {
    // Back RAM with 2 MiB huge pages (MAP_HUGETLB).
    bool huge_pages = false;
  };

  // Where `size` bytes of RAM go in the guest-physical address space.
  static std::vector<GuestRange> RamLayout(uint64_t size);

  // Anonymous, MAP_NORESERVE RAM of `size` bytes (a multiple of 4 KiB, or of
  // 2 MiB with huge pages), laid out by RamLayout.
  static absl::StatusOr<GuestMemory> CreateAnonymous(uint64_t size, Options options);
  // RAM from caller-made mappings (snapshot restore, tests). Regions must
  // be page-aligned and must not overlap.
  static absl::StatusOr<GuestMemory> FromRegions(std::vector<Region> regions);

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  uint64_t size() const { return total_size_; }
  const std::vector<Region>& regions() const { return regions_; }

  // True if [address, address + length) lies inside one RAM region.
  bool Contains(uint64_t address, uint64_t length) const;

  // The host address of [address, address + length), which must lie inside
  // one region. length may be 0 (address must then still be inside RAM).
  absl::StatusOr<uint8_t*> HostAddress(uint64_t address, uint64_t length) const;
  absl::StatusOr<absl::Span<uint8_t>> Slice(uint64_t address, uint64_t length) const;

  absl::Status Read(uint64_t address, void* destination, size_t length) const;
  absl::Status Write(uint64_t address, const void* source, size_t length);

  // A 16-bit field the guest changes while the VMM reads it, or reads while
  // the VMM changes it (virtqueue ring indices, flags, event fields): one
  // aligned access, so that neither side sees half of the other's update
  // (a memcpy of two bytes may copy them one at a time). A misaligned
  // address, which breaks virtio's ring alignment, is copied bytewise.
  absl::StatusOr<uint16_t> LoadU16(uint64_t address) const;
  absl::Status StoreU16(uint64_t address, uint16_t value);

  template <typename T>
  absl::StatusOr<T> ReadObject(uint64_t address) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    absl::Status status = Read(address, &value, sizeof(T));
    if (!status.ok()) return status;
    return value;
  }
  template <typename T>
  absl::Status WriteObject(uint64_t address, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(address, &value, sizeof(T));
  }

  // Bytes of guest RAM backed by host memory right now (mincore), i.e. what
  // the guest touched; the rest of the VMM's RSS is its own overhead.
  uint64_t ResidentBytes() const;

  // Pages that the VMM itself wrote (device DMA); KVM's dirty log does not
  // see those. Write() marks them; code that writes through HostAddress or
  // Slice must call MarkDirty. Only once EnableDirtyTracking was called (a
  // VM with track_dirty_pages, for Diff snapshots): otherwise nothing reads
  // the bitmap and marking is skipped.
  void EnableDirtyTracking() { dirty_tracking_ = true; }
  bool dirty_tracking() const { return dirty_tracking_; }
  void MarkDirty(uint64_t address, uint64_t length);
  // One bit per 4 KiB page of region `index`, cleared by the read.
  std::vector<uint64_t> TakeDirtyBitmap(size_t index);

 private:
  const Region* FindRegion(uint64_t address, uint64_t length, size_t* index) const;

  std::vector<Region> regions_;
  // Per region, one bit per page; unique_ptr so the atomics never move.
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> dirty_;
  uint64_t total_size_ = 0;
  bool dirty_tracking_ = false;
};

}  // namespace hearth::memory

#endif  // HEARTH_VMM_MEMORY_GUEST_MEMORY_H_
