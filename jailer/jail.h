// The jail, step by step, in the order Firecracker's jailer uses (its
// docs/jailer.md), each step a function with its own error message:
//
//   CloseInheritedFds   everything but stdio and --keep-fd fds
//   ClearEnvironment    the VMM starts with an empty environment
//   OpenExecFile        the VMM binary, opened before the jail hides it
//   CreateJailRoot      <base>/<exec name>/<id>/root, empty, root-owned
//   JoinNetns           --netns
//   SetResourceLimits   --resource-limit (raising past the hard limit needs
//                       CAP_SYS_RESOURCE; a refusal is an error)
//   SetUpCgroups        cgroup.h
//   OpenKvm             /dev/kvm, handed to the VMM as --kvm_fd
//   EnterJail           new mount namespace, / made a recursive slave (no
//                       mount event leaks back to the host), the jail root
//                       bind-mounted onto itself (pivot_root needs a mount
//                       point), pivot_root, old root detached and removed,
//                       chroot("."), the new root remounted read-only
//   new pid namespace / daemonize: the jailer forks and stays as the VMM's
//                       reaper, relaying its exit code or signal (daemonize
//                       first: setsid, stdio onto /dev/null)
//   NoNewPrivileges     PR_SET_NO_NEW_PRIVS
//   DropPrivileges      bounding set, ambient set, supplementary groups,
//                       gid, uid, then a check that no capability is left
//   DieWithParent       PR_SET_PDEATHSIG when forked: the VMM dies with its
//                       reaper
//   ExecVmm             execveat(exec fd, "", AT_EMPTY_PATH): the jail root
//                       is empty, so the binary cannot be found by path
#ifndef HEARTH_JAILER_JAIL_H_
#define HEARTH_JAILER_JAIL_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/unique_fd.h"
#include "jailer/flags.h"

namespace hearth::jailer {

absl::Status CloseInheritedFds(const std::vector<int>& keep);
void ClearEnvironment();
absl::StatusOr<UniqueFd> OpenExecFile(const std::string& path);
absl::Status CreateJailRoot(const std::string& root);
absl::Status JoinNetns(const std::string& path);
absl::Status SetResourceLimits(const std::vector<ResourceLimit>& limits);
absl::StatusOr<UniqueFd> OpenKvm();
absl::Status EnterJail(const std::string& root);
absl::Status NoNewPrivileges();
absl::Status DropPrivileges(uid_t uid, gid_t gid);
// Never returns on success.
absl::Status ExecVmm(int exec_fd, const std::string& name, const std::vector<std::string>& args);

// Runs every step for `config`. Returns only on failure (or, as the reaper
// of a forked VMM, never: it exits with the VMM's status).
absl::Status RunJailer(const JailerConfig& config);

}  // namespace hearth::jailer

#endif  // HEARTH_JAILER_JAIL_H_
