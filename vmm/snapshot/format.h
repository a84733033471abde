// The snapshot state file: a fixed header (magic "HSNP", format version,
// payload length, FNV-1a 64 checksum of the payload) followed by a
// hearth.vmm.v1.VmSnapshot message. Anything that is not exactly that --
// another file, a truncated or extended one, a flipped byte, another
// format version -- is refused with a message saying which, before any of
// it is used. Shared by the VMM (writes and restores) and the agent (reads
// the configuration to open a restored VM's files).
#ifndef HEARTH_VMM_SNAPSHOT_FORMAT_H_
#define HEARTH_VMM_SNAPSHOT_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hearth/vmm/v1/snapshot.pb.h"

namespace hearth::snapshot {

inline constexpr uint32_t kFormatVersion = 1;
// State files are small (registers and device state); anything larger is
// not one.
inline constexpr uint64_t kMaxStateBytes = 64ull << 20;
inline constexpr size_t kHeaderBytes = 4 + 4 + 8 + 8;

// The framed file contents for `state`.
std::string EncodeState(const hearth::vmm::v1::VmSnapshot& state);
// Checks the framing and parses the message.
absl::StatusOr<hearth::vmm::v1::VmSnapshot> DecodeState(absl::string_view file);

// Reads a whole state file from `fd` (from offset 0) and decodes it.
absl::StatusOr<hearth::vmm::v1::VmSnapshot> ReadStateFile(int fd);
// Writes `state` to `fd` (truncating it first); returns the bytes written.
absl::StatusOr<size_t> WriteStateFile(int fd, const hearth::vmm::v1::VmSnapshot& state);

uint64_t Fnv1a64(absl::string_view data);

}  // namespace hearth::snapshot

#endif  // HEARTH_VMM_SNAPSHOT_FORMAT_H_
