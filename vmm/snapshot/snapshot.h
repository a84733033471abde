// Snapshot and restore of a whole VM: every vCPU's registers and the
// interrupt controllers from KVM, every device's state, and guest memory.
//
// Create runs on the event-loop thread of a paused VM, so no device works
// while it reads their state and no vCPU is in KVM_RUN. Restore builds a
// new Vmm (see AssembleParts in builder.h) around the memory file mapped
// privately, puts every saved state back and leaves the vCPUs ready to be
// started, running or paused.
#ifndef HEARTH_VMM_SNAPSHOT_SNAPSHOT_H_
#define HEARTH_VMM_SNAPSHOT_SNAPSHOT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/builder.h"
#include "vmm/config/vmm_config.h"
#include "vmm/snapshot/memory_file.h"
#include "vmm/vmm.h"

namespace hearth::snapshot {

struct CreateStats {
  uint64_t state_bytes = 0;
  MemoryWriteStats memory;
  absl::Duration state_time;
  absl::Duration memory_time;
};

// Writes a snapshot of the paused `vmm`: its state to `state_fd` and its
// memory to `memory_fd` (both truncated), Full or Diff. A Diff needs dirty
// page tracking and a previous snapshot of this VM; either kind starts a
// new dirty-tracking interval.
absl::StatusOr<CreateStats> CreateSnapshot(vmm::Vmm* vmm,
                                           hearth::vmm::v1::VmSnapshot::MemoryKind kind,
                                           int state_fd, int memory_fd);

// Checks, before anything is built, that the memory file and the drives
// in `config` are the snapshot's: the memory file's size, the snapshot's
// kind (a Diff cannot be restored), vCPU count, and every drive's size.
absl::Status CheckRestoreFiles(const hearth::vmm::v1::VmSnapshot& snapshot, int memory_fd,
                               const vmm::VmmConfig& config);

// Builds a VM from `snapshot` and its memory file. `config` holds the
// devices' files (opened from snapshot.config() with the kRestore
// purpose); they must match the snapshot's devices. The result has not
// started: call Start (paused or not).
absl::StatusOr<std::unique_ptr<vmm::Vmm>> RestoreVmm(kvm::Kvm kvm,
                                                     const hearth::vmm::v1::VmSnapshot& snapshot,
                                                     UniqueFd memory_file, vmm::VmmConfig config,
                                                     vmm::BuildOptions options,
                                                     bool track_dirty_pages);

}  // namespace hearth::snapshot

#endif  // HEARTH_VMM_SNAPSHOT_SNAPSHOT_H_
