// A guest-initiated vsock connection to host port P goes to the unix
// socket "<uds_path>_P", which the jailed VMM cannot reach: the agent
// connects for it and hands the connected socket over. The agent runs as
// root and the path is a tenant's, so the connection is made without ever
// following the path again or acting as root:
//  * the socket's directory is pinned beneath an image root and the socket
//    itself is opened there with O_PATH | O_NOFOLLOW (a symlink is refused,
//    so is anything but a socket);
//  * the connect goes through /proc/self/fd/<that fd> from a thread whose
//    filesystem uid and gid are the directory's owner's, so the socket's
//    own permissions decide as they would for that owner; a directory
//    owned by root is refused;
//  * the connect does not block: a listener with a full backlog fails the
//    connection instead of stalling the agent.
#ifndef HEARTH_AGENT_GUEST_VSOCK_H_
#define HEARTH_AGENT_GUEST_VSOCK_H_

#include <string>

#include "absl/status/statusor.h"
#include "agent/image_roots.h"
#include "common/unique_fd.h"

namespace hearth::agent {

absl::StatusOr<UniqueFd> ConnectGuestVsock(const ImageRoots& roots, const std::string& path);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_GUEST_VSOCK_H_
