// Parsing of hearthd's flag values that need more than gflags' types, each
// with an error that names the flag. Read once in main.cc.
#ifndef HEARTH_AGENT_FLAG_VALUES_H_
#define HEARTH_AGENT_FLAG_VALUES_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hearth::agent {

// --socket_mode: 1 to 4 octal digits, at most 0770. The API socket gives
// root-equivalent control of every VM, so "other" may never have access,
// and setuid/setgid/sticky bits mean nothing on a socket.
absl::StatusOr<mode_t> ParseSocketMode(absl::string_view text);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_FLAG_VALUES_H_
