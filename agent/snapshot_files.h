// SnapshotOutput: a snapshot file written under a temporary name beside its
// final path (beneath an image root) and renamed into place only once the
// VMM wrote it completely and it is on disk. Until then the old snapshot at
// that path is untouched; a failed or abandoned write removes its
// temporary file. A crash leaves the old file or the new, never neither,
// and its temporary file is removed by the next snapshot to that path.
#ifndef HEARTH_AGENT_SNAPSHOT_FILES_H_
#define HEARTH_AGENT_SNAPSHOT_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "agent/image_roots.h"
#include "common/unique_fd.h"

namespace hearth::agent {

class SnapshotOutput {
 public:
  // The directory of `path` must lie beneath a root; `field` names it in
  // errors.
  static absl::StatusOr<SnapshotOutput> Create(const ImageRoots& roots, const std::string& field,
                                               const std::string& path);
  SnapshotOutput(SnapshotOutput&&) = default;
  SnapshotOutput& operator=(SnapshotOutput&&) = default;
  // Removes the temporary file unless committed.
  ~SnapshotOutput();

  // A descriptor of the temporary file for the VMM to write.
  absl::StatusOr<UniqueFd> Dup() const;
  // fsync, rename over the final path, fsync of the directory.
  absl::Status Commit();

  const std::string& temp_name() const { return temp_; }

 private:
  SnapshotOutput() = default;
  // Removes temporary files left beside the path by an interrupted
  // snapshot (the manager never writes two snapshots to one path at once).
  void RemoveStale();

  std::string field_;
  std::string path_;
  UniqueFd dir_;
  std::string name_;
  std::string temp_;
  UniqueFd file_;
  bool committed_ = false;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_SNAPSHOT_FILES_H_
