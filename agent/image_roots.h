// Host paths clients name (kernels, initrds, drives, vsock sockets, metrics
// and log files, snapshots) must lie under one of the agent's --image_roots.
// Files are opened with openat2(RESOLVE_BENEATH) from a descriptor of the
// root itself, so the kernel refuses ".." and symlinks that lead outside the
// root, and there is no window between checking a path and opening it.
#ifndef HEARTH_AGENT_IMAGE_ROOTS_H_
#define HEARTH_AGENT_IMAGE_ROOTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace hearth::agent {

class ImageRoots {
 public:
  // Opens each root directory (absolute paths).
  static absl::StatusOr<ImageRoots> Open(const std::vector<std::string>& roots);

  // Opens `path` (absolute) with `flags` if it lies under a root and, after
  // resolving symlinks, stays there; PERMISSION_DENIED naming `field` and
  // the path otherwise. With `regular` the result must be a regular file
  // (or a block device, for drives).
  absl::StatusOr<UniqueFd> OpenFile(const std::string& field, const std::string& path, int flags,
                                    bool regular = true) const;
  // For a path the agent creates itself (vsock's uds_path) or connects to:
  // its directory, opened beneath a root (so it cannot lead outside), and
  // its final name. Use "/proc/self/fd/<dir>/<name>" to bind or connect.
  struct Parent {
    UniqueFd dir;
    std::string name;
    std::string ProcPath() const;
  };
  absl::StatusOr<Parent> OpenParent(const std::string& field, const std::string& path) const;

  const std::vector<std::string>& roots() const { return paths_; }

 private:
  struct Root {
    std::string path;   // resolved (realpath) and normalised, no trailing slash
    std::string given;  // as configured, normalised (may name a symlink)
    UniqueFd fd;
  };
  // The root `path` is under and the rest of the path, or PERMISSION_DENIED.
  absl::StatusOr<std::pair<const Root*, std::string>> Locate(const std::string& field,
                                                             const std::string& path) const;
  std::vector<Root> roots_;
  std::vector<std::string> paths_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_IMAGE_ROOTS_H_
