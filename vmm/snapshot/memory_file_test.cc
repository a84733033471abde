#include "vmm/snapshot/memory_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace hearth::snapshot {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRam = 64 * kPage;

class MemoryFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp");
    absl::StatusOr<memory::GuestMemory> memory =
        memory::GuestMemory::CreateAnonymous(kRam, memory::GuestMemory::Options());
    ASSERT_TRUE(memory.ok()) << memory.status();
    memory_ = std::move(*memory);
    memory_.EnableDirtyTracking();
  }
  int NewFile(const std::string& name) {
    int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    return fd;
  }
  void Poke(uint64_t page, uint8_t value) {
    ASSERT_TRUE(memory_.WriteObject(page * kPage + 17, value).ok());
  }
  static uint8_t At(int fd, uint64_t page) {
    uint8_t value = 0xee;
    EXPECT_EQ(::pread(fd, &value, 1, static_cast<off_t>(page * kPage + 17)), 1);
    return value;
  }
  // Bytes the file really occupies (its holes take none).
  static uint64_t Allocated(int fd) {
    struct stat st;
    ::fstat(fd, &st);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

  std::string dir_;
  memory::GuestMemory memory_;
};

TEST_F(MemoryFileTest, FullWritesNonZeroPagesAndLeavesHoles) {
  Poke(3, 0x33);
  Poke(40, 0x40);
  int fd = NewFile("full");
  absl::StatusOr<MemoryWriteStats> stats = WriteFullMemory(memory_, fd);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pages_total, kRam / kPage);
  EXPECT_EQ(stats->pages_written, 2u);
  struct stat st;
  ::fstat(fd, &st);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kRam);
  EXPECT_EQ(At(fd, 3), 0x33);
  EXPECT_EQ(At(fd, 40), 0x40);
  EXPECT_EQ(At(fd, 4), 0);
  EXPECT_LE(Allocated(fd), 4 * kPage) << "zero pages should be holes";
  ::close(fd);
}

TEST_F(MemoryFileTest, MappedFileIsPrivateAndSizeChecked) {
  Poke(5, 0x55);
  int fd = NewFile("map");
  ASSERT_TRUE(WriteFullMemory(memory_, fd).ok());
  std::vector<hearth::vmm::v1::MemoryRegion> layout = MemoryLayout(memory_);
  absl::StatusOr<memory::GuestMemory> mapped = MapMemoryFile(fd, layout, kRam);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(*mapped->ReadObject<uint8_t>(5 * kPage + 17), 0x55);
  ASSERT_TRUE(mapped->WriteObject<uint8_t>(5 * kPage + 17, 0x99).ok());
  EXPECT_EQ(At(fd, 5), 0x55) << "a restored guest must never write its snapshot";
  absl::StatusOr<memory::GuestMemory> wrong = MapMemoryFile(fd, layout, kRam * 2);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(std::string(wrong.status().message()).find("not this snapshot's memory"),
            std::string::npos);
  ::close(fd);
}

TEST_F(MemoryFileTest, DiffMergedOntoItsBaseEqualsAFullSnapshot) {
  Poke(1, 0x11);
  Poke(2, 0x22);
  int base = NewFile("base");
  ASSERT_TRUE(WriteFullMemory(memory_, base).ok());
  (void)memory_.TakeDirtyBitmap(0);
  Poke(2, 0x00);  // back to zero: must still reach the merge
  Poke(9, 0x99);
  std::vector<std::vector<uint64_t>> dirty = {memory_.TakeDirtyBitmap(0)};
  int diff = NewFile("diff");
  absl::StatusOr<MemoryWriteStats> stats = WriteDiffMemory(memory_, dirty, diff);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pages_written, 2u);
  int merged = NewFile("merged");
  ASSERT_TRUE(CopySparse(base, merged).ok());
  ASSERT_TRUE(ApplyDiff(diff, merged).ok());
  int full = NewFile("full");
  ASSERT_TRUE(WriteFullMemory(memory_, full).ok());
  for (uint64_t page = 0; page < kRam / kPage; ++page) {
    EXPECT_EQ(At(merged, page), At(full, page)) << "page " << page;
  }
  EXPECT_EQ(At(merged, 1), 0x11);
  EXPECT_EQ(At(merged, 2), 0x00);
  EXPECT_EQ(At(merged, 9), 0x99);
  int other = NewFile("other");
  ASSERT_EQ(::ftruncate(other, kRam * 2), 0);
  EXPECT_FALSE(ApplyDiff(diff, other).ok()) << "a Diff of another VM's size";
  for (int fd : {base, diff, merged, full, other}) ::close(fd);
}

}  // namespace
}  // namespace hearth::snapshot
