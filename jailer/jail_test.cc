#include "jailer/jail.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hearth::jailer {
namespace {

class JailRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      std::printf("SKIPPED: CreateJailRoot chowns the root to uid 0 (needs root)\n");
      GTEST_SKIP();
    }
    base_ = absl::StrCat("/tmp/hearth-jail-root-", ::getpid(), "-XXXXXX");
    ASSERT_NE(::mkdtemp(base_.data()), nullptr);
    root_ = base_ + "/hearth-vmm/vm1/root";
  }
  void TearDown() override {
    if (base_.empty()) return;
    std::string remove = absl::StrCat("rm -rf '", base_, "'");
    EXPECT_EQ(std::system(remove.c_str()), 0);
  }
  std::string base_;
  std::string root_;
};

TEST_F(JailRootTest, AFreshRootIsCreated) {
  ASSERT_TRUE(CreateJailRoot(root_).ok());
  struct stat st;
  ASSERT_EQ(::stat(root_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(JailRootTest, AnEmptyOldRootLeftByAKilledVmmIsRemoved) {
  ASSERT_TRUE(CreateJailRoot(root_).ok());
  ASSERT_EQ(::mkdir((root_ + "/old_root").c_str(), 0700), 0);
  absl::Status again = CreateJailRoot(root_);
  EXPECT_TRUE(again.ok()) << again;
  EXPECT_NE(::access((root_ + "/old_root").c_str(), F_OK), 0);
}

TEST_F(JailRootTest, AnythingElseInTheRootIsRefused) {
  ASSERT_TRUE(CreateJailRoot(root_).ok());
  ASSERT_EQ(::mkdir((root_ + "/old_root").c_str(), 0700), 0);
  std::ofstream(root_ + "/old_root/file") << "not empty";
  absl::Status refused = CreateJailRoot(root_);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  std::ofstream(root_ + "/other") << "x";
  EXPECT_EQ(CreateJailRoot(root_).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hearth::jailer
