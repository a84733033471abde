// The host resources of a VM's configuration, opened for its VMM: files
// beneath the image roots with the right modes, tap devices, the vsock
// listening socket, output files, and a console socket pair. The VMM gets
// them as fds (control.proto's FdMap) and never resolves a host path.
#ifndef HEARTH_AGENT_BOOT_RESOURCES_H_
#define HEARTH_AGENT_BOOT_RESOURCES_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/image_roots.h"
#include "common/unique_fd.h"
#include "hearth/v1/config.pb.h"
#include "hearth/vmm/v1/control.pb.h"

namespace hearth::agent {

struct BootResources {
  // Indexed by the FdMap the caller passed.
  std::vector<UniqueFd> fds;
  // The agent's end of the console socket.
  UniqueFd console;
  // serial.serial_out_path, if set: the agent copies console output there.
  UniqueFd serial_out;
  // logger.log_path, if set, opened for reading: the same file as the
  // VMM's log fd (reopened through /proc/self/fd, never by its path), for
  // the last line of an exit reason.
  UniqueFd log_reader;
  // The vsock socket the agent bound, by device and inode (0: none): it is
  // removed when the VMM ends only if the path still holds that socket.
  uint64_t vsock_dev = 0;
  uint64_t vsock_ino = 0;
};

// Opens everything `spec` names and fills `map`; `boot` adds the kernel and
// initrd (not for a snapshot load). Errors name the field.
absl::StatusOr<BootResources> OpenBootResources(const ImageRoots& roots,
                                                const hearth::v1::VmConfig& spec, bool boot,
                                                hearth::vmm::v1::FdMap* map);

// A console connection to a VMM: (the agent's end, the VMM's end), for a
// start (OpenBootResources) and for a re-attach.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> ConsolePair();

// Removes the vsock socket at `path` if the entry there is still the one
// the agent bound (device `dev`, inode `ino`): a path swapped for a
// symlink or another file is left alone. Gone already is fine.
void RemoveVsockSocket(const ImageRoots& roots, const std::string& path, uint64_t dev,
                       uint64_t ino);

// The tap device `name`, opened for a VMM (IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR); `field` names it in errors.
absl::StatusOr<UniqueFd> OpenTap(const std::string& name, const std::string& field);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_BOOT_RESOURCES_H_
