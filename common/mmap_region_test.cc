#include "common/mmap_region.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/unique_fd.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

TEST(MmapRegion, AnonymousIsZeroedAndWritable) {
  absl::StatusOr<MmapRegion> region =
      MmapRegion::Anonymous(1 << 20, {PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE});
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_EQ(region->size(), 1u << 20);
  EXPECT_EQ(region->data()[12345], 0);
  region->data()[12345] = 7;
  EXPECT_EQ(region->data()[12345], 7);
}

TEST(MmapRegion, MoveLeavesSourceEmpty) {
  MmapRegion a = *MmapRegion::Anonymous(4096, {});
  uint8_t* p = a.data();
  MmapRegion b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.data(), p);
  MmapRegion c;
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
}

TEST(MmapRegion, FromFdSeesFileContents) {
  char path[] = "/tmp/hearth-mmap-XXXXXX";
  UniqueFd fd(::mkstemp(path));
  ASSERT_TRUE(fd.valid());
  ::unlink(path);
  ASSERT_EQ(::ftruncate(fd.get(), 8192), 0);
  ASSERT_EQ(::pwrite(fd.get(), "hearth", 6, 4096), 6);
  absl::StatusOr<MmapRegion> region =
      MmapRegion::FromFd(fd.get(), 4096, 4096, {PROT_READ, MAP_PRIVATE});
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(region->data()), 6), "hearth");
}

TEST(MmapRegion, BadArgumentsAreErrorsNotCrashes) {
  EXPECT_EQ(MmapRegion::Anonymous(0, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MmapRegion::FromFd(-1, 0, 4096, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(MmapRegion::FromFd(fd.get(), 100, 4096, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A closed descriptor: mmap fails with EBADF, reported with the call.
  int raw = fd.Release();
  ::close(raw);
  absl::Status s = MmapRegion::FromFd(raw, 0, 4096, {PROT_READ, MAP_PRIVATE}).status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("mmap"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace hearth
