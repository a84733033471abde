// The pure decisions of LoadSnapshot and CloneVm: which parameters are
// valid, which memory file is meant, and the restored VM's configuration
// (the snapshot's, with the request's overrides and the VM's own logger and
// metrics). No I/O: the manager reads the snapshot and opens the files.
#ifndef HEARTH_AGENT_RESTORE_PLAN_H_
#define HEARTH_AGENT_RESTORE_PLAN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {

// The memory file a SnapshotLoadParams / CloneVmRequest names: exactly one
// of mem_backend (type "File") and mem_file_path. `field` prefixes errors.
absl::StatusOr<std::string> MemoryPath(const hearth::v1::MemoryBackend* backend, bool has_backend,
                                       const std::string& mem_file_path, const std::string& field);

// Nothing but logger, metrics and machine configuration may be set before
// a load: the snapshot brings everything else.
bool OnlyLoggerAndMetrics(const hearth::v1::VmConfig& spec);

// LoadSnapshot's own checks: snapshot_path, the memory file, huge_pages.
// Returns the memory file's path.
absl::StatusOr<std::string> CheckLoadParams(const hearth::v1::SnapshotLoadParams& params);

// The restored VM's configuration: `snapshot` (the saved VM's) with the
// network, vsock and drive overrides applied, logger and metrics from
// `previous` (what the client set before the load), and dirty-page
// tracking as the load asks. INVALID_ARGUMENT names an override that
// matches nothing; the result is validated as a whole configuration.
absl::StatusOr<hearth::v1::VmConfig> PlanRestore(
    const hearth::v1::VmConfig& snapshot, const hearth::v1::SnapshotLoadParams& params,
    absl::Span<const hearth::v1::DriveOverride> drive_overrides,
    const hearth::v1::VmConfig& previous);

// CloneVm's checks that need no VM state: the path, 1 to 64 clones with
// valid, distinct ids and labels, the memory backend.
absl::Status CheckCloneRequest(const hearth::v1::CloneVmRequest& request);

// What identifies the request that made a clone: a repeat of the same
// request finds its clones by it.
std::string CloneKey(const hearth::v1::CloneVmRequest& request, const hearth::v1::CloneSpec& clone);

// The LoadSnapshot parameters of one clone.
hearth::v1::SnapshotLoadParams CloneLoadParams(const hearth::v1::CloneVmRequest& request,
                                               const hearth::v1::CloneSpec& clone);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_RESTORE_PLAN_H_
