#include "agent/boot_resources.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;

class BootResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/boot-resources-XXXXXX");
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    std::ofstream(dir_ + "/vmlinux") << "kernel";
    std::ofstream(dir_ + "/disk") << "disk";
    absl::StatusOr<ImageRoots> roots = ImageRoots::Open({dir_});
    ASSERT_TRUE(roots.ok()) << roots.status();
    roots_.emplace(std::move(*roots));
  }
  api::VmConfig Spec() const {
    api::VmConfig spec;
    spec.mutable_boot_source()->set_kernel_image_path(dir_ + "/vmlinux");
    api::Drive* drive = spec.add_drives();
    drive->set_drive_id("root");
    drive->set_path_on_host(dir_ + "/disk");
    drive->set_is_read_only(true);
    return spec;
  }
  std::string dir_;
  std::optional<ImageRoots> roots_;
};

TEST_F(BootResourcesTest, OpensWhatTheSpecNames) {
  control::FdMap map;
  absl::StatusOr<BootResources> opened = OpenBootResources(*roots_, Spec(), true, &map);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(map.has_kernel());
  ASSERT_EQ(map.drives().count("root"), 1u);
  ASSERT_TRUE(map.has_console());
  EXPECT_EQ(opened->fds.size(), 3u);
  // The console pair is connected: what the VMM writes, the agent reads.
  int vmm_console = opened->fds[map.console()].get();
  ASSERT_EQ(::send(vmm_console, "hi", 2, 0), 2);
  char buf[4] = {};
  EXPECT_EQ(::read(opened->console.get(), buf, sizeof(buf)), 2);
  // A snapshot load gets no kernel.
  control::FdMap load;
  ASSERT_TRUE(OpenBootResources(*roots_, Spec(), false, &load).ok());
  EXPECT_FALSE(load.has_kernel());
}

TEST_F(BootResourcesTest, TheLogIsReadThroughItsFdNeverItsPath) {
  api::VmConfig spec = Spec();
  spec.mutable_logger()->set_log_path(dir_ + "/vm.log");
  control::FdMap map;
  absl::StatusOr<BootResources> opened = OpenBootResources(*roots_, spec, true, &map);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(map.has_log());
  ASSERT_EQ(::write(opened->fds[map.log()].get(), "vmm says hi\n", 12), 12);
  // The path is swapped for a symlink to a secret: the reader still reads
  // the VM's own log.
  std::ofstream(dir_ + "/secret") << "secret\n";
  ASSERT_EQ(::rename((dir_ + "/vm.log").c_str(), (dir_ + "/old.log").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ + "/secret").c_str(), (dir_ + "/vm.log").c_str()), 0);
  char buf[64] = {};
  ASSERT_EQ(::pread(opened->log_reader.get(), buf, sizeof(buf) - 1, 0), 12);
  EXPECT_STREQ(buf, "vmm says hi\n");
}

TEST_F(BootResourcesTest, ErrorsNameTheField) {
  api::VmConfig spec = Spec();
  spec.mutable_drives(0)->set_path_on_host(dir_ + "/missing");
  control::FdMap map;
  absl::Status status = OpenBootResources(*roots_, spec, true, &map).status();
  EXPECT_NE(status.message().find("drives[0].path_on_host"), absl::string_view::npos) << status;
  spec = Spec();
  spec.mutable_boot_source()->set_kernel_image_path("/etc/passwd");
  status = OpenBootResources(*roots_, spec, true, &map).status();
  EXPECT_NE(status.message().find("boot_source.kernel_image_path"), absl::string_view::npos)
      << status;
}

TEST_F(BootResourcesTest, VsockListenerReplacesAStaleSocket) {
  api::VmConfig spec = Spec();
  spec.mutable_vsock()->set_guest_cid(3);
  spec.mutable_vsock()->set_uds_path(dir_ + "/v.sock");
  control::FdMap map;
  {
    absl::StatusOr<BootResources> first = OpenBootResources(*roots_, spec, true, &map);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_NE(first->vsock_ino, 0u);
    // While it listens, the path is in use.
    control::FdMap again;
    EXPECT_EQ(OpenBootResources(*roots_, spec, true, &again).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  // The first listener is closed; its socket file is stale.
  absl::StatusOr<BootResources> second = OpenBootResources(*roots_, spec, true, &map);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(map.has_vsock_listener());
}

TEST_F(BootResourcesTest, OnlyTheSocketTheAgentBoundIsRemoved) {
  api::VmConfig spec = Spec();
  spec.mutable_vsock()->set_guest_cid(3);
  spec.mutable_vsock()->set_uds_path(dir_ + "/v.sock");
  control::FdMap map;
  absl::StatusOr<BootResources> bound = OpenBootResources(*roots_, spec, true, &map);
  ASSERT_TRUE(bound.ok());
  // Swapped for a symlink to a precious file: neither is removed.
  std::ofstream(dir_ + "/precious") << "keep";
  ASSERT_EQ(::rename((dir_ + "/v.sock").c_str(), (dir_ + "/moved.sock").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ + "/precious").c_str(), (dir_ + "/v.sock").c_str()), 0);
  RemoveVsockSocket(*roots_, dir_ + "/v.sock", bound->vsock_dev, bound->vsock_ino);
  EXPECT_EQ(::access((dir_ + "/precious").c_str(), F_OK), 0);
  struct stat st;
  EXPECT_EQ(::lstat((dir_ + "/v.sock").c_str(), &st), 0);
  // Back in place, it is removed.
  ASSERT_EQ(::unlink((dir_ + "/v.sock").c_str()), 0);
  ASSERT_EQ(::rename((dir_ + "/moved.sock").c_str(), (dir_ + "/v.sock").c_str()), 0);
  RemoveVsockSocket(*roots_, dir_ + "/v.sock", bound->vsock_dev, bound->vsock_ino);
  EXPECT_NE(::lstat((dir_ + "/v.sock").c_str(), &st), 0);
}

}  // namespace
}  // namespace hearth::agent
