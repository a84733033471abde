#include "agent/image_roots.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

// Reads what `fd` holds from its start.
std::string ReadFd(int fd) {
  char buffer[256];
  ssize_t n = ::pread(fd, buffer, sizeof(buffer), 0);
  return n < 0 ? "" : std::string(buffer, static_cast<size_t>(n));
}

// A scratch tree under $TEST_TMPDIR:
//   <tmp>/root/kernel            "vmlinux"
//   <tmp>/root/sub/              (directory)
//   <tmp>/root/sub/disk          "disk"
//   <tmp>/root/fifo              (FIFO)
//   <tmp>/root/to-kernel  -> kernel                (relative, stays inside)
//   <tmp>/root/sub/up     -> ../kernel             (relative, stays inside)
//   <tmp>/root/escape     -> ../outside/secret     (relative, leaves)
//   <tmp>/root/absolute   -> <tmp>/root/kernel     (absolute, inside)
//   <tmp>/root/outdir     -> ../outside            (directory symlink, leaves)
//   <tmp>/outside/secret  "secret"
//   <tmp>/root-link       -> root
class ImageRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = ::getenv("TEST_TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/roots-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    // Resolved, so that these tests do not depend on how $TEST_TMPDIR is
    // spelled; RootGivenAsSymlinkWorks covers the other case.
    char resolved[PATH_MAX];
    ASSERT_NE(::realpath(pattern.c_str(), resolved), nullptr);
    tmp_ = resolved;
    root_ = tmp_ + "/root";
    outside_ = tmp_ + "/outside";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((root_ + "/sub").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    WriteFile(root_ + "/kernel", "vmlinux");
    WriteFile(root_ + "/sub/disk", "disk");
    WriteFile(outside_ + "/secret", "secret");
    ASSERT_EQ(::mkfifo((root_ + "/fifo").c_str(), 0644), 0);
    ASSERT_EQ(::symlink("kernel", (root_ + "/to-kernel").c_str()), 0);
    ASSERT_EQ(::symlink("../kernel", (root_ + "/sub/up").c_str()), 0);
    ASSERT_EQ(::symlink("../outside/secret", (root_ + "/escape").c_str()), 0);
    ASSERT_EQ(::symlink((root_ + "/kernel").c_str(), (root_ + "/absolute").c_str()), 0);
    ASSERT_EQ(::symlink("../outside", (root_ + "/outdir").c_str()), 0);
    ASSERT_EQ(::symlink("root", (tmp_ + "/root-link").c_str()), 0);
  }

  ImageRoots Roots(const std::vector<std::string>& roots) {
    absl::StatusOr<ImageRoots> opened = ImageRoots::Open(roots);
    EXPECT_TRUE(opened.ok()) << opened.status();
    return opened.ok() ? *std::move(opened) : ImageRoots();
  }

  // Opens `path` read-only under the one root `root_`.
  absl::StatusOr<UniqueFd> Open(const std::string& path, bool regular = true) {
    return Roots({root_}).OpenFile("drive.path_on_host", path, O_RDONLY, regular);
  }

  std::string tmp_;
  std::string root_;
  std::string outside_;
};

// The status is `code` and its message starts with the field name.
void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::string& field = "drive.path_on_host") {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_TRUE(absl::StartsWith(status.message(), field + ": ")) << status;
}

// ---------------------------------------------------------------------------
// Opening roots
// ---------------------------------------------------------------------------

TEST_F(ImageRootsTest, RelativeRootIsRefused) {
  absl::StatusOr<ImageRoots> roots = ImageRoots::Open({"images"});
  EXPECT_EQ(roots.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageRootsTest, MissingRootIsAnError) {
  EXPECT_FALSE(ImageRoots::Open({tmp_ + "/nonexistent"}).ok());
}

TEST_F(ImageRootsTest, RootsAreReportedResolved) {
  ImageRoots roots = Roots({root_ + "/", tmp_ + "/root-link"});
  EXPECT_EQ(roots.roots(), (std::vector<std::string>{root_, root_}));
}

// ---------------------------------------------------------------------------
// OpenFile
// ---------------------------------------------------------------------------

TEST_F(ImageRootsTest, FileUnderTheRootOpens) {
  absl::StatusOr<UniqueFd> fd = Open(root_ + "/kernel");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "vmlinux");
}

TEST_F(ImageRootsTest, FileInASubdirectoryOpens) {
  absl::StatusOr<UniqueFd> fd = Open(root_ + "/sub/disk");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "disk");
}

TEST_F(ImageRootsTest, RedundantSlashesAndDotsAreFine) {
  absl::StatusOr<UniqueFd> fd = Open(root_ + "//./sub///disk");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "disk");
}

TEST_F(ImageRootsTest, DotDotThatStaysInsideIsFine) {
  absl::StatusOr<UniqueFd> fd = Open(root_ + "/sub/../kernel");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "vmlinux");
}

TEST_F(ImageRootsTest, DotDotOutOfTheRootIsDenied) {
  ExpectError(Open(root_ + "/../outside/secret").status(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ImageRootsTest, SymlinkLeadingOutsideIsDenied) {
  ExpectError(Open(root_ + "/escape").status(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ImageRootsTest, PathThroughADirectorySymlinkLeadingOutsideIsDenied) {
  ExpectError(Open(root_ + "/outdir/secret").status(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ImageRootsTest, RelativeSymlinkStayingInsideOpens) {
  absl::StatusOr<UniqueFd> fd = Open(root_ + "/to-kernel");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "vmlinux");
  fd = Open(root_ + "/sub/up");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "vmlinux");
}

// RESOLVE_BENEATH refuses every absolute symlink, even one whose target lies
// inside the root: the kernel cannot tell, since the root's own path means
// nothing beneath its descriptor. Such images must use relative links.
TEST_F(ImageRootsTest, AbsoluteSymlinkIsDeniedEvenIfItsTargetIsInside) {
  absl::Status status = Open(root_ + "/absolute").status();
  ExpectError(status, absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(status.message(), "absolute symlink")) << status;
}

TEST_F(ImageRootsTest, RelativePathIsDenied) {
  ExpectError(Open("kernel").status(), absl::StatusCode::kPermissionDenied);
  ExpectError(Open("").status(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ImageRootsTest, PathUnderNoRootIsDenied) {
  ExpectError(Open(outside_ + "/secret").status(), absl::StatusCode::kPermissionDenied);
  // A sibling whose name merely starts with the root's.
  ASSERT_EQ(::mkdir((root_ + "x").c_str(), 0755), 0);
  WriteFile(root_ + "x/file", "x");
  ExpectError(Open(root_ + "x/file").status(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ImageRootsTest, TheRootItselfIsDenied) {
  ExpectError(Open(root_).status(), absl::StatusCode::kPermissionDenied);
  ExpectError(Open(root_ + "/").status(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ImageRootsTest, DirectoryIsNotARegularFile) {
  absl::Status status = Open(root_ + "/sub").status();
  ExpectError(status, absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "not a regular file")) << status;
}

TEST_F(ImageRootsTest, DirectoryOpensWhenRegularIsNotRequired) {
  EXPECT_TRUE(Open(root_ + "/sub", /*regular=*/false).ok());
}

// Without a writer, a blocking open() of a FIFO would never return.
TEST_F(ImageRootsTest, FifoIsNotARegularFileAndDoesNotBlock) {
  ExpectError(Open(root_ + "/fifo").status(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<UniqueFd> fd =
      Roots({root_}).OpenFile("logger.log_path", root_ + "/fifo", O_WRONLY | O_APPEND);
  ExpectError(fd.status(), absl::StatusCode::kInvalidArgument, "logger.log_path");
}

TEST_F(ImageRootsTest, RegularFileIsNotLeftNonBlocking) {
  absl::StatusOr<UniqueFd> fd = Open(root_ + "/kernel");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(::fcntl(fd->get(), F_GETFL) & O_NONBLOCK, 0);
}

TEST_F(ImageRootsTest, MissingFileIsInvalidArgumentNamingTheField) {
  absl::Status status = Open(root_ + "/no-such-kernel").status();
  ExpectError(status, absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), root_ + "/no-such-kernel")) << status;
}

TEST_F(ImageRootsTest, CreatesAFileWithOCreat) {
  absl::StatusOr<UniqueFd> fd = Roots({root_}).OpenFile(
      "metrics.metrics_path", root_ + "/sub/metrics.json", O_WRONLY | O_APPEND | O_CREAT);
  ASSERT_TRUE(fd.ok()) << fd.status();
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/sub/metrics.json").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(ImageRootsTest, RootWithTrailingSlashWorks) {
  absl::StatusOr<UniqueFd> fd = Roots({root_ + "/"}).OpenFile("f", root_ + "/kernel", O_RDONLY);
  EXPECT_TRUE(fd.ok()) << fd.status();
}

// A root configured as a symlink accepts paths spelled through the link and
// through its target.
TEST_F(ImageRootsTest, RootGivenAsSymlinkWorks) {
  ImageRoots roots = Roots({tmp_ + "/root-link"});
  absl::StatusOr<UniqueFd> fd = roots.OpenFile("f", tmp_ + "/root-link/kernel", O_RDONLY);
  EXPECT_TRUE(fd.ok()) << fd.status();
  fd = roots.OpenFile("f", root_ + "/kernel", O_RDONLY);
  EXPECT_TRUE(fd.ok()) << fd.status();
  ExpectError(roots.OpenFile("f", tmp_ + "/root-link/escape", O_RDONLY).status(),
              absl::StatusCode::kPermissionDenied, "f");
}

TEST_F(ImageRootsTest, SecondRootIsSearchedToo) {
  ImageRoots roots = Roots({outside_, root_});
  EXPECT_TRUE(roots.OpenFile("f", root_ + "/kernel", O_RDONLY).ok());
  EXPECT_TRUE(roots.OpenFile("f", outside_ + "/secret", O_RDONLY).ok());
}

// "/" as a root allows any absolute path, still without "..": there is
// nothing above it anyway.
TEST_F(ImageRootsTest, SlashAsRootAllowsAnyPath) {
  ImageRoots roots = Roots({"/"});
  absl::StatusOr<UniqueFd> fd = roots.OpenFile("f", outside_ + "/secret", O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(ReadFd(fd->get()), "secret");
  // Absolute symlinks are refused under "/" as well (see above).
  ExpectError(roots.OpenFile("f", root_ + "/absolute", O_RDONLY).status(),
              absl::StatusCode::kPermissionDenied, "f");
}

// ---------------------------------------------------------------------------
// OpenParent
// ---------------------------------------------------------------------------

TEST_F(ImageRootsTest, OpenParentOfANewNameInAnExistingDirectory) {
  absl::StatusOr<ImageRoots::Parent> parent =
      Roots({root_}).OpenParent("vsock.uds_path", root_ + "/sub/v.sock");
  ASSERT_TRUE(parent.ok()) << parent.status();
  EXPECT_EQ(parent->name, "v.sock");
  EXPECT_EQ(parent->ProcPath(), "/proc/self/fd/" + std::to_string(parent->dir.get()) + "/v.sock");
}

TEST_F(ImageRootsTest, ProcPathCanBindAUnixSocket) {
  absl::StatusOr<ImageRoots::Parent> parent =
      Roots({root_}).OpenParent("vsock.uds_path", root_ + "/sub/v.sock");
  ASSERT_TRUE(parent.ok()) << parent.status();
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock.valid());
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::string path = parent->ProcPath();
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/sub/v.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

TEST_F(ImageRootsTest, OpenParentDirectlyInTheRoot) {
  absl::StatusOr<ImageRoots::Parent> parent =
      Roots({root_}).OpenParent("vsock.uds_path", root_ + "/v.sock");
  ASSERT_TRUE(parent.ok()) << parent.status();
  EXPECT_EQ(parent->name, "v.sock");
}

TEST_F(ImageRootsTest, OpenParentRefusesPathsThatNameNoFile) {
  ImageRoots roots = Roots({root_});
  for (const std::string& path :
       {root_ + "/sub/", root_ + "/sub/..", root_ + "/sub/.", root_ + "/..", root_ + "/"}) {
    absl::Status status = roots.OpenParent("vsock.uds_path", path).status();
    ExpectError(status, absl::StatusCode::kPermissionDenied, "vsock.uds_path");
  }
}

TEST_F(ImageRootsTest, OpenParentThroughASymlinkLeadingOutsideIsDenied) {
  ExpectError(Roots({root_}).OpenParent("vsock.uds_path", root_ + "/outdir/v.sock").status(),
              absl::StatusCode::kPermissionDenied, "vsock.uds_path");
  ExpectError(Roots({root_}).OpenParent("vsock.uds_path", root_ + "/../outside/v.sock").status(),
              absl::StatusCode::kPermissionDenied, "vsock.uds_path");
}

TEST_F(ImageRootsTest, OpenParentOfAMissingDirectoryIsInvalidArgument) {
  ExpectError(Roots({root_}).OpenParent("vsock.uds_path", root_ + "/nodir/v.sock").status(),
              absl::StatusCode::kInvalidArgument, "vsock.uds_path");
}

TEST_F(ImageRootsTest, OpenParentUnderNoRootIsDenied) {
  ExpectError(Roots({root_}).OpenParent("vsock.uds_path", outside_ + "/v.sock").status(),
              absl::StatusCode::kPermissionDenied, "vsock.uds_path");
  ExpectError(Roots({root_}).OpenParent("vsock.uds_path", "v.sock").status(),
              absl::StatusCode::kPermissionDenied, "vsock.uds_path");
}

}  // namespace
}  // namespace hearth::agent
