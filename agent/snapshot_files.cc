#include "agent/snapshot_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/errno_status.h"
#include "glog/logging.h"

namespace hearth::agent {

absl::StatusOr<SnapshotOutput> SnapshotOutput::Create(const ImageRoots& roots,
                                                      const std::string& field,
                                                      const std::string& path) {
  absl::StatusOr<ImageRoots::Parent> parent = roots.OpenParent(field, path);
  if (!parent.ok()) return parent.status();
  SnapshotOutput out;
  out.field_ = field;
  out.path_ = path;
  out.dir_ = std::move(parent->dir);
  out.name_ = std::move(parent->name);
  out.RemoveStale();
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint64_t nonce = 0;
    if (::getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) {
      return ErrnoStatus(absl::StrCat(field, ": getrandom"));
    }
    out.temp_ = absl::StrFormat(".%s.hearth-tmp-%016x", out.name_, nonce);
    int fd = ::openat(out.dir_.get(), out.temp_.c_str(),
                      O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      out.file_.Reset(fd);
      return out;
    }
    if (errno != EEXIST) {
      return ErrnoStatus(absl::StrCat(field, ": creating a temporary file beside ", path));
    }
  }
  return absl::AlreadyExistsError(absl::StrCat(field, ": no free temporary name beside ", path));
}

void SnapshotOutput::RemoveStale() {
  // Temporary files of an earlier snapshot to this path that never
  // finished (the agent was killed while the VMM wrote it).
  const std::string prefix = absl::StrCat(".", name_, ".hearth-tmp-");
  int fd = ::openat(dir_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return;
  }
  while (struct dirent* entry = ::readdir(dir)) {
    if (std::string(entry->d_name).rfind(prefix, 0) != 0) continue;
    if (::unlinkat(dir_.get(), entry->d_name, 0) < 0) {
      LOG(WARNING) << field_ << ": removing " << entry->d_name << ": " << std::strerror(errno);
    }
  }
  ::closedir(dir);  // closes fd too
}

SnapshotOutput::~SnapshotOutput() {
  if (committed_ || !dir_.valid() || temp_.empty()) return;
  if (::unlinkat(dir_.get(), temp_.c_str(), 0) < 0 && errno != ENOENT) {
    LOG(WARNING) << field_ << ": removing " << temp_ << ": " << std::strerror(errno);
  }
}

absl::StatusOr<UniqueFd> SnapshotOutput::Dup() const {
  int fd = ::fcntl(file_.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(absl::StrCat(field_, ": dup"));
  return UniqueFd(fd);
}

absl::Status SnapshotOutput::Commit() {
  if (::fsync(file_.get()) < 0) return ErrnoStatus(absl::StrCat(field_, ": fsync ", temp_));
  if (::renameat(dir_.get(), temp_.c_str(), dir_.get(), name_.c_str()) < 0) {
    return ErrnoStatus(absl::StrCat(field_, ": renaming the new snapshot into ", path_));
  }
  committed_ = true;
  // The pinned directory is an O_PATH descriptor: open it for the fsync.
  UniqueFd dir(::openat(dir_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid() || ::fsync(dir.get()) < 0) {
    return ErrnoStatus(absl::StrCat(field_, ": fsync of the directory of ", path_));
  }
  return absl::OkStatus();
}

}  // namespace hearth::agent
