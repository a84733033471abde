#include "vmm/snapshot/memory_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/file_io.h"
#include "common/mmap_region.h"
#include "common/status_macros.h"

namespace hearth::snapshot {
namespace {

namespace v1 = ::hearth::vmm::v1;
constexpr uint64_t kPage = 4096;
// Largest single write: runs of pages are written together up to this.
// Larger writes were several times slower on the development host (the
// page cache then allocates large folios, slow to fault in for the first
// time); 256 KiB keeps the system calls few and the copy fast.
constexpr uint64_t kMaxWrite = 256ull << 10;

bool IsZeroPage(const uint8_t* page) {
  const uint64_t* words = reinterpret_cast<const uint64_t*>(page);
  uint64_t any = 0;
  for (size_t i = 0; i < kPage / sizeof(uint64_t); ++i) any |= words[i];
  return any == 0;
}

// Writes the pages of region `index` for which `wanted(page)` holds, in
// runs, at the region's offset in the file.
template <typename Wanted>
absl::Status WritePages(const memory::GuestMemory::Region& region, uint64_t file_offset, int fd,
                        Wanted wanted, MemoryWriteStats* stats) {
  const uint8_t* base = region.mapping.data();
  const uint64_t pages = region.mapping.size() / kPage;
  stats->pages_total += pages;
  uint64_t page = 0;
  while (page < pages) {
    if (!wanted(page, base + page * kPage)) {
      ++page;
      continue;
    }
    uint64_t first = page;
    while (page < pages && (page - first) * kPage < kMaxWrite &&
           wanted(page, base + page * kPage)) {
      ++page;
    }
    uint64_t bytes = (page - first) * kPage;
    RETURN_IF_ERROR(PwriteAll(fd, absl::MakeConstSpan(base + first * kPage, bytes),
                              file_offset + first * kPage, "write memory file"));
    stats->pages_written += page - first;
    stats->bytes_written += bytes;
  }
  return absl::OkStatus();
}

absl::Status SizeFile(int fd, uint64_t size) {
  if (::ftruncate(fd, 0) < 0 || ::ftruncate(fd, static_cast<off_t>(size)) < 0) {
    return ErrnoStatus("size the memory file");
  }
  return absl::OkStatus();
}

// Copies the data extents of `from` into `to` at the same offsets.
absl::Status CopyExtents(int from, int to) {
  struct stat st;
  if (::fstat(from, &st) < 0) return ErrnoStatus("fstat");
  const off_t size = st.st_size;
  std::vector<uint8_t> buffer(kMaxWrite);
  off_t offset = 0;
  while (offset < size) {
    off_t data = ::lseek(from, offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return ErrnoStatus("lseek SEEK_DATA");
    }
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    if (hole < 0) return ErrnoStatus("lseek SEEK_HOLE");
    for (off_t at = data; at < hole;) {
      size_t want =
          static_cast<size_t>(std::min<off_t>(hole - at, static_cast<off_t>(buffer.size())));
      ssize_t n = ::pread(from, buffer.data(), want, at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoStatus("read while copying memory");
      RETURN_IF_ERROR(PwriteAll(to, absl::MakeConstSpan(buffer.data(), static_cast<size_t>(n)),
                                static_cast<uint64_t>(at), "write memory file"));
      at += n;
    }
    offset = hole;
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<v1::MemoryRegion> MemoryLayout(const memory::GuestMemory& memory) {
  std::vector<v1::MemoryRegion> layout;
  uint64_t offset = 0;
  for (const memory::GuestMemory::Region& region : memory.regions()) {
    v1::MemoryRegion r;
    r.set_guest_address(region.guest_address);
    r.set_size(region.mapping.size());
    r.set_file_offset(offset);
    offset += region.mapping.size();
    layout.push_back(r);
  }
  return layout;
}

absl::StatusOr<MemoryWriteStats> WriteFullMemory(const memory::GuestMemory& memory, int fd) {
  MemoryWriteStats stats;
  RETURN_IF_ERROR(SizeFile(fd, memory.size()));
  std::vector<v1::MemoryRegion> layout = MemoryLayout(memory);
  for (size_t i = 0; i < memory.regions().size(); ++i) {
    RETURN_IF_ERROR(WritePages(
        memory.regions()[i], layout[i].file_offset(), fd,
        [](uint64_t, const uint8_t* page) { return !IsZeroPage(page); }, &stats));
  }
  return stats;
}

absl::StatusOr<MemoryWriteStats> WriteDiffMemory(const memory::GuestMemory& memory,
                                                 const std::vector<std::vector<uint64_t>>& dirty,
                                                 int fd) {
  MemoryWriteStats stats;
  if (dirty.size() != memory.regions().size()) {
    return absl::InternalError("dirty bitmaps do not match the memory regions");
  }
  RETURN_IF_ERROR(SizeFile(fd, memory.size()));
  std::vector<v1::MemoryRegion> layout = MemoryLayout(memory);
  for (size_t i = 0; i < memory.regions().size(); ++i) {
    const std::vector<uint64_t>& bits = dirty[i];
    RETURN_IF_ERROR(WritePages(
        memory.regions()[i], layout[i].file_offset(), fd,
        [&bits](uint64_t page, const uint8_t*) {
          return page / 64 < bits.size() && (bits[page / 64] >> (page % 64)) & 1;
        },
        &stats));
  }
  return stats;
}

absl::StatusOr<memory::GuestMemory> MapMemoryFile(int fd,
                                                  const std::vector<v1::MemoryRegion>& layout,
                                                  uint64_t expected_size) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return ErrnoStatus("fstat the memory file");
  if (!S_ISREG(st.st_mode))
    return absl::InvalidArgumentError("the memory file is not a regular file");
  if (static_cast<uint64_t>(st.st_size) != expected_size) {
    return absl::InvalidArgumentError(absl::StrCat("the memory file is ", st.st_size,
                                                   " bytes but the snapshot's guest RAM is ",
                                                   expected_size, ": not this snapshot's memory"));
  }
  std::vector<memory::GuestMemory::Region> regions;
  for (const v1::MemoryRegion& r : layout) {
    if (r.size() == 0 || r.size() % kPage != 0 || r.file_offset() % kPage != 0 ||
        r.guest_address() % kPage != 0 || r.file_offset() + r.size() < r.file_offset() ||
        r.file_offset() + r.size() > expected_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot memory region at 0x", absl::Hex(r.guest_address()), " is malformed"));
    }
    MmapRegion::Options options;
    options.flags = MAP_PRIVATE | MAP_NORESERVE;
    ASSIGN_OR_RETURN(MmapRegion mapping,
                     MmapRegion::FromFd(fd, r.file_offset(), r.size(), options));
    regions.push_back({r.guest_address(), std::move(mapping)});
  }
  return memory::GuestMemory::FromRegions(std::move(regions));
}

absl::Status CopySparse(int from, int to) {
  struct stat st;
  if (::fstat(from, &st) < 0) return ErrnoStatus("fstat");
  RETURN_IF_ERROR(SizeFile(to, static_cast<uint64_t>(st.st_size)));
  return CopyExtents(from, to);
}

absl::Status ApplyDiff(int diff, int target) {
  struct stat a, b;
  if (::fstat(diff, &a) < 0 || ::fstat(target, &b) < 0) return ErrnoStatus("fstat");
  if (a.st_size != b.st_size) {
    return absl::InvalidArgumentError(absl::StrCat("the Diff memory file is ", a.st_size,
                                                   " bytes and its base ", b.st_size,
                                                   ": they belong to different VMs"));
  }
  return CopyExtents(diff, target);
}

}  // namespace hearth::snapshot
