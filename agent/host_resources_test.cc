#include "agent/host_resources.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;

class HostResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/tmp/hearth-host-resources-", ::getpid(), "-XXXXXX");
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    std::ofstream(dir_ + "/disk") << "disk";
    absl::StatusOr<ImageRoots> roots = ImageRoots::Open({dir_});
    ASSERT_TRUE(roots.ok());
    roots_.emplace(std::move(*roots));
  }
  void TearDown() override {
    std::string remove = absl::StrCat("rm -rf '", dir_, "'");
    EXPECT_EQ(std::system(remove.c_str()), 0);
  }
  std::string dir_;
  std::optional<ImageRoots> roots_;
};

TEST_F(HostResourcesTest, DriveModes) {
  api::Drive drive;
  EXPECT_EQ(DriveOpenFlags(drive), O_RDWR);
  drive.set_is_read_only(true);
  EXPECT_EQ(DriveOpenFlags(drive), O_RDONLY);
}

TEST_F(HostResourcesTest, CheckPath) {
  EXPECT_TRUE(CheckPath(*roots_, "f", "", O_RDONLY).ok());  // unset is fine
  EXPECT_TRUE(CheckPath(*roots_, "f", dir_ + "/disk", O_RDWR).ok());
  absl::Status outside = CheckPath(*roots_, "drive.path_on_host", "/etc/passwd", O_RDONLY);
  EXPECT_EQ(outside.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(outside.message().find("drive.path_on_host"), absl::string_view::npos);
  EXPECT_FALSE(CheckPath(*roots_, "f", dir_ + "/missing", O_RDONLY).ok());
}

TEST_F(HostResourcesTest, CheckingAnOutputFileCreatesNothing) {
  const std::string log = dir_ + "/vm.log";
  EXPECT_TRUE(CheckPath(*roots_, "logger.log_path", log, kOutputFileFlags).ok());
  EXPECT_NE(::access(log.c_str(), F_OK), 0);  // not created by the check
  EXPECT_FALSE(
      CheckPath(*roots_, "logger.log_path", dir_ + "/no/dir/vm.log", kOutputFileFlags).ok());
  EXPECT_EQ(CheckPath(*roots_, "logger.log_path", "/etc/hearth.log", kOutputFileFlags).code(),
            absl::StatusCode::kPermissionDenied);
  // An existing file is opened as at boot: a directory is refused.
  ASSERT_EQ(::mkdir((dir_ + "/adir").c_str(), 0700), 0);
  EXPECT_FALSE(CheckPath(*roots_, "logger.log_path", dir_ + "/adir", kOutputFileFlags).ok());
  EXPECT_TRUE(CheckPath(*roots_, "logger.log_path", dir_ + "/disk", kOutputFileFlags).ok());
}

TEST_F(HostResourcesTest, CheckTapNamesTheMissingDevice) {
  absl::Status status = CheckTap("network_interfaces[0].host_dev_name", "hearth-no-such-tap");
  EXPECT_EQ(status.message(),
            "network_interfaces[0].host_dev_name: there is no tap device named "
            "\"hearth-no-such-tap\" on the host");
}

TEST_F(HostResourcesTest, CheckVsockPath) {
  EXPECT_TRUE(CheckVsockPath(*roots_, "vsock.uds_path", dir_ + "/v.sock").ok());
  absl::Status file = CheckVsockPath(*roots_, "vsock.uds_path", dir_ + "/disk");
  EXPECT_EQ(file.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(file.message().find("exists and is not a socket"), absl::string_view::npos);
  // A stale socket is fine: it will be replaced.
  UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM, 0));
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::string path = dir_ + "/old.sock";
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_TRUE(CheckVsockPath(*roots_, "vsock.uds_path", path).ok());
  EXPECT_FALSE(CheckVsockPath(*roots_, "vsock.uds_path", "/run/elsewhere.sock").ok());
}

TEST_F(HostResourcesTest, ConfigResourcesArePrefixed) {
  api::VmConfig config;
  config.mutable_boot_source()->set_kernel_image_path(dir_ + "/disk");
  api::Drive* drive = config.add_drives();
  drive->set_drive_id("data");
  drive->set_path_on_host(dir_ + "/missing");
  absl::Status status = CheckConfigResources(*roots_, config, "config.");
  EXPECT_NE(status.message().find("config.drives[0].path_on_host"), absl::string_view::npos)
      << status;
  config.mutable_drives(0)->set_path_on_host(dir_ + "/disk");
  EXPECT_TRUE(CheckConfigResources(*roots_, config, "config.").ok());
}

}  // namespace
}  // namespace hearth::agent
