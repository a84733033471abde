// Size limits on every field of a client's request, checked before
// anything else looks at it: a string or bytes field holds at most
// kMaxFieldBytes, a repeated field or map at most kMaxRepeated entries.
// Every value the agent keeps (records, watch history, error messages)
// is bounded by these. Errors name the field by its path
// ("config.drives[2].partuuid") and never echo the value.
#ifndef HEARTH_AGENT_FIELD_LIMITS_H_
#define HEARTH_AGENT_FIELD_LIMITS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace hearth::agent {

// PATH_MAX: every path, id and argument fits.
inline constexpr size_t kMaxFieldBytes = 4096;
inline constexpr int kMaxRepeated = 256;
// How much of a status message a client gets back: the rest is cut, so
// that no echoed input can exceed gRPC's metadata limits.
inline constexpr size_t kMaxErrorMessage = 1024;

absl::Status CheckFieldSizes(const google::protobuf::Message& message);

// `message` cut to kMaxErrorMessage bytes (on a UTF-8 boundary), marked.
std::string TruncateMessage(absl::string_view message);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_FIELD_LIMITS_H_
