#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace hearth {
namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST(UniqueFd, ClosesOnDestruction) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(fd.valid());
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFd, MoveTransfersOwnership) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = a.get();
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checked on purpose
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

TEST(UniqueFd, ReleaseAndReset) {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = fd.Release();
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(IsOpen(raw));
  fd.Reset(raw);
  fd.Reset();
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFd, DuplicateIsIndependent) {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  absl::StatusOr<UniqueFd> copy = fd.Duplicate();
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_NE(copy->get(), fd.get());
  EXPECT_TRUE(::fcntl(copy->get(), F_GETFD) & FD_CLOEXEC);
  fd.Reset();
  EXPECT_TRUE(IsOpen(copy->get()));
}

TEST(UniqueFd, DuplicateOfEmptyOrClosedFails) {
  EXPECT_EQ(UniqueFd().Duplicate().status().code(), absl::StatusCode::kFailedPrecondition);
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ::close(raw);
  UniqueFd stale(raw);
  absl::StatusOr<UniqueFd> copy = stale.Duplicate();
  EXPECT_FALSE(copy.ok());
  EXPECT_NE(copy.status().message().find("fcntl"), absl::string_view::npos);
  stale.Release();  // already closed above
}

}  // namespace
}  // namespace hearth
