#include "common/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(FileIo, ReadTailOfAFile) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string path = std::string(base != nullptr ? base : "/tmp") + "/tail";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ReadTail(fd, 10), "");
  ASSERT_TRUE(PwriteAll(fd, absl::string_view("first line\nlast line\n"), 0, "write").ok());
  EXPECT_EQ(ReadTail(fd, 10), "last line\n");
  EXPECT_EQ(ReadTail(fd, 1000), "first line\nlast line\n");
  EXPECT_EQ(ReadTail(-1, 10), "");
  ::close(fd);
}

TEST(FileIo, WritesAndReadsAtOffsetsAndStopsAtTheEnd) {
  int fd = ::memfd_create("file_io_test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string big(1 << 20, 'x');
  ASSERT_TRUE(PwriteAll(fd, Bytes(big), 4096, "write").ok());
  ASSERT_TRUE(PwriteAll(fd, Bytes("head"), 0, "write").ok());
  std::string back(8, '\0');
  absl::StatusOr<size_t> n = PreadFull(
      fd, absl::MakeSpan(reinterpret_cast<uint8_t*>(back.data()), back.size()), 0, "read");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 8u);
  EXPECT_EQ(back, std::string("head") + std::string(4, '\0'));
  // Past the end: what there is, then 0.
  std::string tail(100, '\0');
  n = PreadFull(fd, absl::MakeSpan(reinterpret_cast<uint8_t*>(tail.data()), tail.size()),
                4096 + big.size() - 10, "read");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
  ::close(fd);
}

TEST(FileIo, ErrorsSayWhatAndWhere) {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  absl::Status written = PwriteAll(fd, Bytes("x"), 512, "write snapshot state");
  EXPECT_FALSE(written.ok());
  EXPECT_TRUE(absl::StrContains(written.message(), "write snapshot state at 512")) << written;
  ::close(fd);
}

}  // namespace
}  // namespace hearth
