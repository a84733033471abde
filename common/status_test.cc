#include <cerrno>

#include "common/errno_status.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace hearth {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacros, AssignOrReturnPropagatesValueAndError) {
  EXPECT_EQ(*Quarter(8), 2);
  absl::StatusOr<int> bad = Quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "odd");
}

TEST(StatusMacros, ReturnIfErrorEvaluatesOnce) {
  int calls = 0;
  auto counted = [&]() {
    ++calls;
    return absl::InternalError("x");
  };
  auto f = [&]() -> absl::Status {
    RETURN_IF_ERROR(counted());
    return absl::OkStatus();
  };
  EXPECT_EQ(f().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

TEST(ErrnoStatus, NamesTheCallAndMapsTheCode) {
  absl::Status s = ErrnoStatus(ENOENT, "open /nope");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "open /nope: No such file or directory");
  errno = EACCES;
  EXPECT_EQ(ErrnoStatus("chroot").code(), absl::StatusCode::kPermissionDenied);
}

TEST(RetryOnEintr, RetriesOnlyOnEintr) {
  int calls = 0;
  int result = RetryOnEintr([&] {
    if (++calls < 3) {
      errno = EINTR;
      return -1;
    }
    return 7;
  });
  EXPECT_EQ(result, 7);
  EXPECT_EQ(calls, 3);
  calls = 0;
  result = RetryOnEintr([&] {
    ++calls;
    errno = EBADF;
    return -1;
  });
  EXPECT_EQ(result, -1);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace hearth
