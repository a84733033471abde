#include "common/cgroup_mounts.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/unique_fd.h"

namespace hearth {

std::vector<CgroupMount> ParseCgroupMounts(const std::string& mounts) {
  std::vector<CgroupMount> result;
  for (absl::string_view line : absl::StrSplit(mounts, '\n', absl::SkipEmpty())) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 4) continue;
    if (fields[2] == "cgroup2") {
      result.push_back({fields[1], {}, true});
    } else if (fields[2] == "cgroup") {
      CgroupMount mount{fields[1], {}, false};
      for (absl::string_view option : absl::StrSplit(fields[3], ',')) {
        // Controllers appear among the mount options; skip the generic ones.
        if (option == "rw" || option == "ro" || option == "nosuid" || option == "nodev" ||
            option == "noexec" || option == "relatime" || absl::StartsWith(option, "name=") ||
            absl::StartsWith(option, "release_agent=") || option == "clone_children" ||
            option == "noprefix" || option == "xattr") {
          continue;
        }
        mount.controllers.emplace_back(option);
      }
      result.push_back(std::move(mount));
    }
  }
  return result;
}

const CgroupMount* FindCgroupV1(const std::vector<CgroupMount>& mounts,
                                const std::string& controller) {
  for (const CgroupMount& mount : mounts) {
    if (mount.v2) continue;
    for (const std::string& c : mount.controllers) {
      if (c == controller) return &mount;
    }
  }
  return nullptr;
}

const CgroupMount* FindCgroupV2(const std::vector<CgroupMount>& mounts) {
  for (const CgroupMount& mount : mounts) {
    if (mount.v2) return &mount;
  }
  return nullptr;
}

absl::StatusOr<std::string> CgroupDirectory(const std::vector<CgroupMount>& mounts, int version,
                                            const std::string& controller,
                                            const std::string& parent, const std::string& id) {
  const CgroupMount* mount = version == 2 ? FindCgroupV2(mounts) : FindCgroupV1(mounts, controller);
  if (mount == nullptr) {
    return absl::NotFoundError(version == 2
                                   ? std::string("cgroup v2: no cgroup2 file system is mounted")
                                   : absl::StrCat("cgroup v1: no hierarchy is mounted for the \"",
                                                  controller, "\" controller"));
  }
  return absl::StrCat(mount->path, "/", parent, "/", id);
}

absl::Status WriteControlFile(const std::string& path, const std::string& contents) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open ", path));
  ssize_t n = RetryOnEintr([&] { return ::write(fd.get(), contents.data(), contents.size()); });
  if (n < 0) return ErrnoStatus(absl::StrCat("write \"", contents, "\" to ", path));
  if (static_cast<size_t>(n) != contents.size()) {
    return absl::DataLossError(absl::StrCat("short write to ", path));
  }
  return absl::OkStatus();
}

}  // namespace hearth
