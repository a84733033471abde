#include "agent/guest_vsock.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

// The tenant owning the socket's directory: "nobody" when the test runs
// as root (then the agent's root must not carry over), else the test's own
// user.
uid_t Tenant() { return ::geteuid() == 0 ? 65534 : ::geteuid(); }

UniqueFd Listen(const std::string& path, mode_t mode) {
  UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(socket.get(), 4), 0);
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return socket;
}

class GuestVsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = absl::StrCat("/tmp/hearth-gv-", ::getpid(), "-XXXXXX");
    ASSERT_NE(::mkdtemp(base_.data()), nullptr);
    root_ = base_ + "/images";
    tenant_ = root_ + "/tenant";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(tenant_.c_str(), 0755), 0);
    ASSERT_EQ(::chown(tenant_.c_str(), Tenant(), Tenant()), 0) << std::strerror(errno);
    absl::StatusOr<ImageRoots> roots = ImageRoots::Open({root_});
    ASSERT_TRUE(roots.ok());
    roots_.emplace(std::move(*roots));
  }
  void TearDown() override {
    if (base_.empty()) return;
    std::string remove = absl::StrCat("rm -rf '", base_, "'");
    EXPECT_EQ(std::system(remove.c_str()), 0);
  }
  std::string base_, root_, tenant_;
  std::optional<ImageRoots> roots_;
};

TEST_F(GuestVsockTest, ConnectsToTheTenantsSocket) {
  UniqueFd listener = Listen(tenant_ + "/v.sock_1234", 0666);
  absl::StatusOr<UniqueFd> connected = ConnectGuestVsock(*roots_, tenant_ + "/v.sock_1234");
  ASSERT_TRUE(connected.ok()) << connected.status();
  UniqueFd accepted(::accept(listener.get(), nullptr, nullptr));
  ASSERT_TRUE(accepted.valid());
  ASSERT_EQ(::write(connected->get(), "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(accepted.get(), &c, 1), 1);
}

TEST_F(GuestVsockTest, ASymlinkToAnotherSocketIsRefused) {
  // A root-only socket outside the roots (hearthd's own API socket, say).
  UniqueFd secret = Listen(base_ + "/root-only.sock", 0600);
  ASSERT_EQ(::symlink((base_ + "/root-only.sock").c_str(), (tenant_ + "/v.sock_1").c_str()), 0);
  absl::StatusOr<UniqueFd> connected = ConnectGuestVsock(*roots_, tenant_ + "/v.sock_1");
  EXPECT_FALSE(connected.ok());
  // And inside the roots too: the last component is never followed.
  UniqueFd inside = Listen(tenant_ + "/real.sock", 0666);
  ASSERT_EQ(::symlink("real.sock", (tenant_ + "/v.sock_2").c_str()), 0);
  EXPECT_FALSE(ConnectGuestVsock(*roots_, tenant_ + "/v.sock_2").ok());
}

TEST_F(GuestVsockTest, TheSocketsPermissionsDecideAsForItsOwner) {
  // A socket in the tenant's directory that the tenant may not write (as
  // root: root's 0600 socket; else: mode 0): the tenant could not connect,
  // so neither does the agent on the guest's behalf.
  UniqueFd listener = Listen(tenant_ + "/v.sock_5", ::geteuid() == 0 ? 0600 : 0);
  absl::StatusOr<UniqueFd> connected = ConnectGuestVsock(*roots_, tenant_ + "/v.sock_5");
  EXPECT_FALSE(connected.ok());
  EXPECT_NE(connected.status().message().find("Permission denied"), absl::string_view::npos)
      << connected.status();
}

TEST_F(GuestVsockTest, ARootOwnedDirectoryIsRefused) {
  // /tmp is root's on every host: a root of its own for this test.
  absl::StatusOr<ImageRoots> tmp = ImageRoots::Open({"/tmp"});
  ASSERT_TRUE(tmp.ok());
  const std::string path = absl::StrCat("/tmp/hearth-gv-", ::getpid(), ".sock_9");
  UniqueFd listener = Listen(path, 0666);
  absl::StatusOr<UniqueFd> connected = ConnectGuestVsock(*tmp, path);
  ::unlink(path.c_str());
  EXPECT_EQ(connected.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(connected.status().message().find("owned by root"), absl::string_view::npos);
}

TEST_F(GuestVsockTest, NotASocketOrOutsideTheRoots) {
  ASSERT_EQ(::mkdir((tenant_ + "/v.sock_3").c_str(), 0755), 0);
  EXPECT_EQ(ConnectGuestVsock(*roots_, tenant_ + "/v.sock_3").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConnectGuestVsock(*roots_, "/run/hearth/hearth.sock").status().code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace hearth::agent
