// Where the cgroup hierarchies are mounted (v1: one per controller or group
// of controllers; v2: the unified one), read from /proc/self/mounts. Shared
// by the jailer, which creates a VM's cgroups, and the agent, which writes
// their limits and removes them.
#ifndef HEARTH_COMMON_CGROUP_MOUNTS_H_
#define HEARTH_COMMON_CGROUP_MOUNTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hearth {

struct CgroupMount {
  std::string path;                      // e.g. /sys/fs/cgroup/memory
  std::vector<std::string> controllers;  // v1: from the mount options
  bool v2 = false;
};

// Cgroup mounts from the contents of /proc/self/mounts.
std::vector<CgroupMount> ParseCgroupMounts(const std::string& mounts);

// The v1 hierarchy holding `controller`, or the v2 mount; null if none.
const CgroupMount* FindCgroupV1(const std::vector<CgroupMount>& mounts,
                                const std::string& controller);
const CgroupMount* FindCgroupV2(const std::vector<CgroupMount>& mounts);

// The directory of cgroup `parent`/`id` for `controller`: in the v1
// hierarchy that holds it, or (version 2) in the cgroup2 mount. NOT_FOUND
// says which is not mounted. The jailer creates these; the agent limits and
// removes them.
absl::StatusOr<std::string> CgroupDirectory(const std::vector<CgroupMount>& mounts, int version,
                                            const std::string& controller,
                                            const std::string& parent, const std::string& id);

// Writes `contents` to an existing cgroup control file (a limit, tasks,
// cgroup.procs) in one write(2), as the kernel wants it; the error names the
// file and the value.
absl::Status WriteControlFile(const std::string& path, const std::string& contents);

}  // namespace hearth

#endif  // HEARTH_COMMON_CGROUP_MOUNTS_H_
