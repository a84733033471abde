#include "agent/guest_vsock.h"

#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"

namespace hearth::agent {

absl::StatusOr<UniqueFd> ConnectGuestVsock(const ImageRoots& roots, const std::string& path) {
  absl::StatusOr<ImageRoots::Parent> parent = roots.OpenParent("vsock.uds_path", path);
  if (!parent.ok()) return parent.status();
  UniqueFd target(
      ::openat(parent->dir.get(), parent->name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!target.valid()) {
    return ErrnoStatus(absl::StrCat("vsock: ", path));
  }
  struct stat st;
  if (::fstat(target.get(), &st) < 0) return ErrnoStatus(absl::StrCat("vsock: fstat ", path));
  if (!S_ISSOCK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("vsock: ", path, S_ISLNK(st.st_mode) ? " is a symlink" : " is not a socket"));
  }
  struct stat dir;
  if (::fstat(parent->dir.get(), &dir) < 0) {
    return ErrnoStatus(absl::StrCat("vsock: fstat the directory of ", path));
  }
  if (dir.st_uid == 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "vsock: the directory of ", path,
        " is owned by root; guest connections are made as the directory's owner, never as root"));
  }
  absl::StatusOr<sockaddr_un> address =
      UnixSocketAddress(absl::StrCat("/proc/self/fd/", target.get()), "vsock.uds_path");
  if (!address.ok()) return address.status();
  // setfsuid/setfsgid are per thread: a short-lived thread takes the
  // owner's identity for the connect and nothing else.
  UniqueFd socket;
  int error = 0;
  std::thread connector([&] {
    ::setfsgid(dir.st_gid);
    ::setfsuid(dir.st_uid);
    // setfsuid reports the previous value, not failure: read it back.
    if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != dir.st_uid ||
        static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) != dir.st_gid) {
      error = EPERM;
      return;
    }
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s.valid() ||
        ::connect(s.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof(*address)) < 0) {
      error = errno;
      return;
    }
    socket = std::move(s);
  });
  connector.join();
  if (!socket.valid()) return ErrnoStatus(error, absl::StrCat("vsock: connect ", path));
  // The VMM gets the socket as a plain blocking one, as before.
  int flags = ::fcntl(socket.get(), F_GETFL);
  if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
    return ErrnoStatus(absl::StrCat("vsock: fcntl ", path));
  }
  return socket;
}

}  // namespace hearth::agent
