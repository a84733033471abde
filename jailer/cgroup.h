// Creating the VMM's cgroup and moving the jailer into it, on cgroup v1
// (one hierarchy per controller, like these development hosts) and v2 (the
// unified hierarchy of most production hosts).
//
// v1: for every controller a --cgroup file names, find its hierarchy in
// /proc/self/mounts, create <mount>/<parent>/<id>, copy cpuset.cpus and
// cpuset.mems down from the parent into new cpuset groups (a new cpuset group
// starts empty, and a task cannot join an empty one), write the values, then
// the pid into `tasks`.
// v2: find the cgroup2 mount, create <mount>/<parent>/<id>, enable the named
// controllers in cgroup.subtree_control of every ancestor (the kernel only
// allows that in cgroups without processes: the root, and Hearth's parent),
// write the values, then the pid into cgroup.procs.
#ifndef HEARTH_JAILER_CGROUP_H_
#define HEARTH_JAILER_CGROUP_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cgroup_mounts.h"
#include "jailer/filesystem.h"
#include "jailer/flags.h"

namespace hearth::jailer {

// The directories the VMM's cgroup lives in (one per v1 hierarchy, or the
// one v2 directory), for the settings given.
absl::StatusOr<std::vector<std::string>> CgroupDirectories(const std::vector<CgroupMount>& mounts,
                                                           const JailerConfig& config);

// Creates the cgroup(s), writes the settings and moves `pid` in. Each error
// names the step and the path.
absl::Status SetUpCgroups(Filesystem* fs, const JailerConfig& config, pid_t pid);

}  // namespace hearth::jailer

#endif  // HEARTH_JAILER_CGROUP_H_
