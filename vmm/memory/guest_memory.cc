#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::memory {
namespace {

constexpr uint64_t kHugePageSize = 2 * x86::layout::kMiB;

size_t PageWords(uint64_t bytes) {
  uint64_t pages = (bytes + x86::layout::kPageSize - 1) / x86::layout::kPageSize;
  return static_cast<size_t>((pages + 63) / 64);
}

absl::Status OutOfRange(uint64_t address, uint64_t length) {
  return absl::OutOfRangeError(absl::StrCat("guest range [0x", absl::Hex(address), ", +0x",
                                            absl::Hex(length), ") is not inside guest RAM"));
}

}  // namespace

std::vector<GuestRange> GuestMemory::RamLayout(uint64_t size) {
  std::vector<GuestRange> ranges;
  uint64_t low = std::min(size, x86::layout::kMmioHoleStart);
  if (low > 0) ranges.push_back({0, low});
  if (size > low) ranges.push_back({x86::layout::kHighRamStart, size - low});
  return ranges;
}

absl::StatusOr<GuestMemory> GuestMemory::CreateAnonymous(uint64_t size, Options options) {
  uint64_t granule = options.huge_pages ? kHugePageSize : x86::layout::kPageSize;
  if (size == 0 || size % granule != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest memory size ", size, " must be a non-zero multiple of ", granule));
  }
  std::vector<Region> regions;
  for (const GuestRange& range : RamLayout(size)) {
    MmapRegion::Options mmap_options;
    mmap_options.flags = MAP_PRIVATE | MAP_NORESERVE;
    if (options.huge_pages) mmap_options.flags |= MAP_HUGETLB;
    ASSIGN_OR_RETURN(MmapRegion mapping, MmapRegion::Anonymous(range.size, mmap_options));
    regions.push_back({range.start, std::move(mapping)});
  }
  return FromRegions(std::move(regions));
}

absl::StatusOr<GuestMemory> GuestMemory::FromRegions(std::vector<Region> regions) {
  std::sort(regions.begin(), regions.end(),
            [](const Region& a, const Region& b) { return a.guest_address < b.guest_address; });
  GuestMemory memory;
  uint64_t previous_end = 0;
  for (size_t i = 0; i < regions.size(); ++i) {
    const Region& r = regions[i];
    if (!r.mapping.valid() || r.guest_address % x86::layout::kPageSize != 0 ||
        r.mapping.size() % x86::layout::kPageSize != 0) {
      return absl::InvalidArgumentError(absl::StrCat("guest memory region at 0x",
                                                     absl::Hex(r.guest_address),
                                                     " is empty or not page-aligned"));
    }
    if (i > 0 && r.guest_address < previous_end) {
      return absl::InvalidArgumentError(absl::StrCat(
          "guest memory region at 0x", absl::Hex(r.guest_address), " overlaps the previous one"));
    }
    if (r.guest_address + r.mapping.size() < r.guest_address) {
      return absl::InvalidArgumentError("guest memory region wraps around");
    }
    previous_end = r.guest_address + r.mapping.size();
    memory.total_size_ += r.mapping.size();
    size_t words = PageWords(r.mapping.size());
    memory.dirty_.push_back(std::make_unique<std::atomic<uint64_t>[]>(words));
    for (size_t w = 0; w < words; ++w) memory.dirty_.back()[w] = 0;
  }
  memory.regions_ = std::move(regions);
  return memory;
}

const GuestMemory::Region* GuestMemory::FindRegion(uint64_t address, uint64_t length,
                                                   size_t* index) const {
  if (address + length < address) return nullptr;  // wraps
  for (size_t i = 0; i < regions_.size(); ++i) {
    const Region& r = regions_[i];
    if (address < r.guest_address) continue;
    uint64_t offset = address - r.guest_address;
    if (offset >= r.mapping.size()) continue;
    if (length > r.mapping.size() - offset) return nullptr;
    if (index != nullptr) *index = i;
    return &r;
  }
  return nullptr;
}

bool GuestMemory::Contains(uint64_t address, uint64_t length) const {
  return FindRegion(address, length, nullptr) != nullptr;
}

absl::StatusOr<uint8_t*> GuestMemory::HostAddress(uint64_t address, uint64_t length) const {
  const Region* r = FindRegion(address, length, nullptr);
  if (r == nullptr) return OutOfRange(address, length);
  return r->mapping.data() + (address - r->guest_address);
}

absl::StatusOr<absl::Span<uint8_t>> GuestMemory::Slice(uint64_t address, uint64_t length) const {
  ASSIGN_OR_RETURN(uint8_t * host, HostAddress(address, length));
  return absl::Span<uint8_t>(host, static_cast<size_t>(length));
}

absl::Status GuestMemory::Read(uint64_t address, void* destination, size_t length) const {
  ASSIGN_OR_RETURN(uint8_t * host, HostAddress(address, length));
  std::memcpy(destination, host, length);
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(uint64_t address, const void* source, size_t length) {
  ASSIGN_OR_RETURN(uint8_t * host, HostAddress(address, length));
  std::memcpy(host, source, length);
  MarkDirty(address, length);
  return absl::OkStatus();
}

absl::StatusOr<uint16_t> GuestMemory::LoadU16(uint64_t address) const {
  ASSIGN_OR_RETURN(uint8_t * host, HostAddress(address, sizeof(uint16_t)));
  if (reinterpret_cast<uintptr_t>(host) % alignof(uint16_t) != 0) {
    uint16_t value;
    std::memcpy(&value, host, sizeof(value));
    return value;
  }
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(host), __ATOMIC_RELAXED);
}

absl::Status GuestMemory::StoreU16(uint64_t address, uint16_t value) {
  ASSIGN_OR_RETURN(uint8_t * host, HostAddress(address, sizeof(uint16_t)));
  if (reinterpret_cast<uintptr_t>(host) % alignof(uint16_t) != 0) {
    std::memcpy(host, &value, sizeof(value));
  } else {
    __atomic_store_n(reinterpret_cast<uint16_t*>(host), value, __ATOMIC_RELAXED);
  }
  MarkDirty(address, sizeof(uint16_t));
  return absl::OkStatus();
}

uint64_t GuestMemory::ResidentBytes() const {
  uint64_t resident = 0;
  std::vector<unsigned char> pages;
  for (const Region& r : regions_) {
    pages.resize(r.mapping.size() / x86::layout::kPageSize);
    if (::mincore(r.mapping.data(), r.mapping.size(), pages.data()) != 0) continue;
    for (unsigned char p : pages) resident += (p & 1) ? x86::layout::kPageSize : 0;
  }
  return resident;
}

void GuestMemory::MarkDirty(uint64_t address, uint64_t length) {
  if (!dirty_tracking_ || length == 0) return;
  size_t index = 0;
  const Region* r = FindRegion(address, length, &index);
  if (r == nullptr) return;
  uint64_t first = (address - r->guest_address) / x86::layout::kPageSize;
  uint64_t last = (address - r->guest_address + length - 1) / x86::layout::kPageSize;
  for (uint64_t page = first; page <= last; ++page) {
    dirty_[index][page / 64].fetch_or(uint64_t{1} << (page % 64), std::memory_order_relaxed);
  }
}

std::vector<uint64_t> GuestMemory::TakeDirtyBitmap(size_t index) {
  std::vector<uint64_t> bitmap;
  if (index >= regions_.size()) return bitmap;
  size_t words = PageWords(regions_[index].mapping.size());
  bitmap.resize(words);
  for (size_t w = 0; w < words; ++w) {
    bitmap[w] = dirty_[index][w].exchange(0, std::memory_order_relaxed);
  }
  return bitmap;
}

}  // namespace hearth::memory
