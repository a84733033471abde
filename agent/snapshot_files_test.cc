#include "agent/snapshot_files.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

class SnapshotOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/tmp/hearth-snapshot-files-", ::getpid(), "-XXXXXX");
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    absl::StatusOr<ImageRoots> roots = ImageRoots::Open({dir_});
    ASSERT_TRUE(roots.ok());
    roots_.emplace(std::move(*roots));
    std::ofstream(dir_ + "/vm.snap") << "old snapshot";
  }
  void TearDown() override {
    std::string remove = absl::StrCat("rm -rf '", dir_, "'");
    EXPECT_EQ(std::system(remove.c_str()), 0);
  }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::vector<std::string> Names() {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
    return names;
  }
  std::string dir_;
  std::optional<ImageRoots> roots_;
};

TEST_F(SnapshotOutputTest, TheOldSnapshotStaysUntilTheNewOneIsComplete) {
  absl::StatusOr<SnapshotOutput> out =
      SnapshotOutput::Create(*roots_, "params.snapshot_path", dir_ + "/vm.snap");
  ASSERT_TRUE(out.ok()) << out.status();
  absl::StatusOr<UniqueFd> fd = out->Dup();
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(::write(fd->get(), "new", 3), 3);
  EXPECT_EQ(Read("vm.snap"), "old snapshot");  // a crash now keeps the old one
  ASSERT_TRUE(out->Commit().ok());
  EXPECT_EQ(Read("vm.snap"), "new");
  EXPECT_EQ(Names(), std::vector<std::string>{"vm.snap"});
}

TEST_F(SnapshotOutputTest, AnAbandonedWriteLeavesTheOldSnapshotAndNoTemporaryFile) {
  {
    absl::StatusOr<SnapshotOutput> out =
        SnapshotOutput::Create(*roots_, "params.snapshot_path", dir_ + "/vm.snap");
    ASSERT_TRUE(out.ok());
    absl::StatusOr<UniqueFd> fd = out->Dup();
    ASSERT_EQ(::write(fd->get(), "half", 4), 4);
    EXPECT_EQ(Names().size(), 2u);
  }
  EXPECT_EQ(Read("vm.snap"), "old snapshot");
  EXPECT_EQ(Names(), std::vector<std::string>{"vm.snap"});
}

TEST_F(SnapshotOutputTest, TheNextSnapshotRemovesWhatAKilledOneLeft) {
  std::ofstream(dir_ + "/.vm.snap.hearth-tmp-0123456789abcdef") << "half";
  std::ofstream(dir_ + "/.other.snap.hearth-tmp-0123456789abcdef") << "someone else's";
  absl::StatusOr<SnapshotOutput> out =
      SnapshotOutput::Create(*roots_, "params.snapshot_path", dir_ + "/vm.snap");
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(out->Commit().ok());
  EXPECT_EQ(Names().size(), 2u);  // vm.snap and the other path's temporary file
  EXPECT_EQ(Read(".other.snap.hearth-tmp-0123456789abcdef"), "someone else's");
}

TEST_F(SnapshotOutputTest, OutsideTheRootsIsRefused) {
  EXPECT_EQ(SnapshotOutput::Create(*roots_, "params.snapshot_path", "/etc/vm.snap").status().code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace hearth::agent
