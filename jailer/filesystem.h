// The few file-system operations cgroup set-up needs, behind an interface
// so that the v1 and v2 logic can be tested against a fake tree.
#ifndef HEARTH_JAILER_FILESYSTEM_H_
#define HEARTH_JAILER_FILESYSTEM_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace hearth::jailer {

class Filesystem {
 public:
  virtual ~Filesystem() = default;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Writes to an existing file (cgroup control files); no create, no
  // truncate semantics beyond what the kernel file does.
  virtual absl::Status WriteFile(const std::string& path, const std::string& contents) = 0;
  // Creates one directory; ALREADY_EXISTS if it is there.
  virtual absl::Status MakeDirectory(const std::string& path, mode_t mode) = 0;
  virtual bool IsDirectory(const std::string& path) = 0;
};

// The real one.
class HostFilesystem : public Filesystem {
 public:
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::Status WriteFile(const std::string& path, const std::string& contents) override;
  absl::Status MakeDirectory(const std::string& path, mode_t mode) override;
  bool IsDirectory(const std::string& path) override;
};

// mkdir -p; true in *created for each level that did not exist.
absl::Status MakeDirectories(Filesystem* fs, const std::string& path, mode_t mode);

}  // namespace hearth::jailer

#endif  // HEARTH_JAILER_FILESYSTEM_H_
