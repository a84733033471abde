#include "common/mmap_region.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth {

absl::StatusOr<MmapRegion> MmapRegion::Map(int fd, uint64_t offset, size_t size, Options options,
                                           const char* what) {
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": size is 0"));
  }
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset % kPage != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": offset ", offset, " is not page-aligned"));
  }
  void* p = ::mmap(nullptr, size, options.prot, options.flags, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    return ErrnoStatus(absl::StrCat(what, " fd=", fd, " offset=", offset, " size=", size));
  }
  return MmapRegion(static_cast<uint8_t*>(p), size);
}

absl::StatusOr<MmapRegion> MmapRegion::Anonymous(size_t size, Options options) {
  options.flags |= MAP_ANONYMOUS;
  return Map(-1, 0, size, options, "mmap(anonymous)");
}

absl::StatusOr<MmapRegion> MmapRegion::FromFd(int fd, uint64_t offset, size_t size,
                                              Options options) {
  if (fd < 0) return absl::InvalidArgumentError("mmap(fd): invalid fd");
  return Map(fd, offset, size, options, "mmap(fd)");
}

MmapRegion::~MmapRegion() { Reset(); }

MmapRegion::MmapRegion(MmapRegion&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MmapRegion& MmapRegion::operator=(MmapRegion&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void MmapRegion::Reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace hearth
