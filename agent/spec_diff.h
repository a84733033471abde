// Which fields of two messages differ, as dotted paths ("config.
// machine_config.vcpu_count", "labels[env]"), for CreateVm's
// ALREADY_EXISTS message.
#ifndef HEARTH_AGENT_SPEC_DIFF_H_
#define HEARTH_AGENT_SPEC_DIFF_H_

#include <string>
#include <vector>

#include "google/protobuf/message.h"

namespace hearth::agent {

// Paths of the fields that differ between `a` and `b` (same type), each
// prefixed with `prefix`; at most `limit` of them.
std::vector<std::string> DifferingFields(const google::protobuf::Message& a,
                                         const google::protobuf::Message& b,
                                         const std::string& prefix, size_t limit = 8);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_SPEC_DIFF_H_
