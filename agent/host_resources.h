// Checks that the host resources a configuration names can be used, the
// way they will be opened at boot: files beneath an image root with the
// right mode, tap devices that exist. Run when a client sets them (Put*,
// CreateVm), so that errors name the field then rather than at boot.
#ifndef HEARTH_AGENT_HOST_RESOURCES_H_
#define HEARTH_AGENT_HOST_RESOURCES_H_

#include <fcntl.h>

#include <string>

#include "absl/status/status.h"
#include "agent/image_roots.h"
#include "hearth/v1/config.pb.h"

namespace hearth::agent {

// How the agent opens host files, here and at boot: output files (serial,
// logger, metrics) are appended to and created if missing; a drive is
// opened read-write unless it is read-only.
inline constexpr int kOutputFileFlags = O_WRONLY | O_APPEND | O_CREAT;
int DriveOpenFlags(const hearth::v1::Drive& drive);

// Opens (and closes) `path` with `flags` beneath a root; empty is fine.
absl::Status CheckPath(const ImageRoots& roots, const std::string& field, const std::string& path,
                       int flags);
// `name` is an existing tap (or tun) device on the host: the agent does not
// create interfaces.
absl::Status CheckTap(const std::string& field, const std::string& name);
// The vsock socket's directory lies beneath a root, and nothing but a stale
// socket is at the path.
absl::Status CheckVsockPath(const ImageRoots& roots, const std::string& field,
                            const std::string& path);

// Every resource of `config`, fields named as in CreateVm ("config.drives[0].
// path_on_host").
absl::Status CheckConfigResources(const ImageRoots& roots, const hearth::v1::VmConfig& config,
                                  const std::string& prefix);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_HOST_RESOURCES_H_
