#include "agent/image_roots.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"

namespace hearth::agent {
namespace {

absl::Status Denied(const std::string& field, const std::string& path, absl::string_view why) {
  return absl::PermissionDeniedError(absl::StrCat(field, ": ", path, " ", why));
}

// A failed open of a client's path: PERMISSION_DENIED when the path leaves
// its root or the agent may not open it, INVALID_ARGUMENT otherwise (the
// client named something that does not exist or is not usable).
absl::Status OpenFailed(const std::string& field, const std::string& what, const std::string& path,
                        int error) {
  // RESOLVE_BENEATH also refuses absolute symlinks, even to a file inside
  // the root.
  if (error == EXDEV) {
    return Denied(field, path, "resolves outside its image root (or through an absolute symlink)");
  }
  std::string message = absl::StrCat(field, ": ", what, " ", path, ": ", std::strerror(error));
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::InvalidArgumentError(message);
}

// "/a//b/./c" -> "/a/b/c"; keeps ".." (the kernel judges those).
std::string Normalise(const std::string& path) {
  std::string out;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    absl::StrAppend(&out, "/", part);
  }
  return out.empty() ? "/" : out;
}

}  // namespace

absl::StatusOr<ImageRoots> ImageRoots::Open(const std::vector<std::string>& roots) {
  ImageRoots result;
  for (const std::string& root : roots) {
    if (root.empty() || root[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("--image_roots: \"", root, "\" is not an absolute path"));
    }
    char resolved[PATH_MAX];
    if (::realpath(root.c_str(), resolved) == nullptr) {
      return ErrnoStatus(absl::StrCat("--image_roots: ", root));
    }
    int fd = ::open(resolved, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(absl::StrCat("--image_roots: open ", resolved));
    // Clients may spell paths through the root as configured (say a
    // symlink /var/lib/images) or as resolved: accept both prefixes. Either
    // way the rest of the path is resolved beneath the same descriptor.
    result.roots_.push_back(Root{Normalise(resolved), Normalise(root), UniqueFd(fd)});
    result.paths_.push_back(Normalise(resolved));
  }
  return result;
}

absl::StatusOr<std::pair<const ImageRoots::Root*, std::string>> ImageRoots::Locate(
    const std::string& field, const std::string& path) const {
  if (path.empty() || path[0] != '/') return Denied(field, path, "is not an absolute path");
  std::string normal = Normalise(path);
  for (const Root& root : roots_) {
    for (const std::string* prefix : {&root.path, &root.given}) {
      if (*prefix == "/") return std::make_pair(&root, normal.substr(1));
      if (absl::StartsWith(normal, *prefix + "/")) {
        return std::make_pair(&root, normal.substr(prefix->size() + 1));
      }
    }
  }
  return Denied(field, path, "is not under an image root");
}

absl::StatusOr<UniqueFd> ImageRoots::OpenFile(const std::string& field, const std::string& path,
                                              int flags, bool regular) const {
  auto located = Locate(field, path);
  if (!located.ok()) return located.status();
  struct open_how how = {};
  // With `regular`, O_NONBLOCK keeps open() of a FIFO from waiting for a
  // peer (forever, on an API thread); it is cleared again below.
  int extra = O_CLOEXEC | O_NOCTTY | (regular ? O_NONBLOCK : 0);
  how.flags = static_cast<uint64_t>(flags | extra);
  if (flags & O_CREAT) how.mode = 0644;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(
      ::syscall(SYS_openat2, located->first->fd.get(), located->second.c_str(), &how, sizeof(how)));
  if (fd < 0) return OpenFailed(field, "cannot open", path, errno);
  UniqueFd file(fd);
  if (regular) {
    struct stat st;
    if (::fstat(fd, &st) < 0) return ErrnoStatus(absl::StrCat(field, ": fstat ", path));
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", path, " is not a regular file or block device"));
    }
    if (!(flags & O_NONBLOCK)) {
      int status_flags = ::fcntl(fd, F_GETFL);
      if (status_flags < 0 || ::fcntl(fd, F_SETFL, status_flags & ~O_NONBLOCK) < 0) {
        return ErrnoStatus(absl::StrCat(field, ": fcntl ", path));
      }
    }
  }
  return file;
}

std::string ImageRoots::Parent::ProcPath() const {
  return absl::StrCat("/proc/self/fd/", dir.get(), "/", name);
}

absl::StatusOr<ImageRoots::Parent> ImageRoots::OpenParent(const std::string& field,
                                                          const std::string& path) const {
  // Normalise drops a trailing "/" or "/.", which would turn "dir/" into
  // the name "dir": refuse those before it does.
  if (absl::EndsWith(path, "/") || absl::EndsWith(path, "/.")) {
    return Denied(field, path, "does not name a file");
  }
  auto located = Locate(field, path);
  if (!located.ok()) return located.status();
  const std::string& relative = located->second;
  size_t slash = relative.rfind('/');
  std::string name = slash == std::string::npos ? relative : relative.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return Denied(field, path, "does not name a file");
  }
  std::string parent = slash == std::string::npos ? "." : relative.substr(0, slash);
  struct open_how how = {};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(
      ::syscall(SYS_openat2, located->first->fd.get(), parent.c_str(), &how, sizeof(how)));
  if (fd < 0) return OpenFailed(field, "cannot open the directory of", path, errno);
  return Parent{UniqueFd(fd), name};
}

}  // namespace hearth::agent
