// MmapRegion: the one owner of a memory mapping. Created by a factory that
// returns StatusOr, unmapped in the destructor, movable, not copyable.
#ifndef HEARTH_COMMON_MMAP_REGION_H_
#define HEARTH_COMMON_MMAP_REGION_H_

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace hearth {

class MmapRegion {
 public:
  struct Options {
    int prot = PROT_READ | PROT_WRITE;
    // MAP_PRIVATE or MAP_SHARED plus modifiers (MAP_NORESERVE, MAP_HUGETLB...).
    int flags = MAP_PRIVATE;
  };

  // Anonymous memory, zero-filled, `size` bytes (> 0).
  static absl::StatusOr<MmapRegion> Anonymous(size_t size, Options options);
  // `size` bytes of `fd` starting at `offset` (page-aligned).
  static absl::StatusOr<MmapRegion> FromFd(int fd, uint64_t offset, size_t size, Options options);

  MmapRegion() = default;
  ~MmapRegion();
  MmapRegion(MmapRegion&& other) noexcept;
  MmapRegion& operator=(MmapRegion&& other) noexcept;
  MmapRegion(const MmapRegion&) = delete;
  MmapRegion& operator=(const MmapRegion&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool valid() const { return data_ != nullptr; }

 private:
  MmapRegion(uint8_t* data, size_t size) : data_(data), size_(size) {}
  static absl::StatusOr<MmapRegion> Map(int fd, uint64_t offset, size_t size, Options options,
                                        const char* what);
  void Reset();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace hearth

#endif  // HEARTH_COMMON_MMAP_REGION_H_
