#include "jailer/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/cgroup_mounts.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace hearth::jailer {

absl::StatusOr<std::string> HostFilesystem::ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open ", path));
  std::string contents;
  char buf[4096];
  while (true) {
    ssize_t n = RetryOnEintr([&] { return ::read(fd.get(), buf, sizeof(buf)); });
    if (n < 0) return ErrnoStatus(absl::StrCat("read ", path));
    if (n == 0) break;
    contents.append(buf, static_cast<size_t>(n));
  }
  return contents;
}

absl::Status HostFilesystem::WriteFile(const std::string& path, const std::string& contents) {
  return WriteControlFile(path, contents);
}

absl::Status HostFilesystem::MakeDirectory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) < 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(path);
    return ErrnoStatus(absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

bool HostFilesystem::IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::Status MakeDirectories(Filesystem* fs, const std::string& path, mode_t mode) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string prefix = slash == std::string::npos ? path : path.substr(0, slash);
    if (!fs->IsDirectory(prefix)) {
      absl::Status status = fs->MakeDirectory(prefix, mode);
      if (!status.ok() && !absl::IsAlreadyExists(status)) return status;
    }
    if (slash == std::string::npos) return absl::OkStatus();
  }
}

}  // namespace hearth::jailer
