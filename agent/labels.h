// VM ids, labels and label selectors (Kubernetes-style equality selectors:
// "k=v", "k==v", "k!=v", "k" (has key), "!k" (lacks key), comma-separated,
// all must match). "k!=v" also matches VMs without "k". A blank selector
// matches every VM; an empty term ("a=b,", "a,,b") is INVALID_ARGUMENT.
#ifndef HEARTH_AGENT_LABELS_H_
#define HEARTH_AGENT_LABELS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace hearth::agent {

using Labels = google::protobuf::Map<std::string, std::string>;

// [A-Za-z0-9-]{1,64}: it also names the VM's jail directory and cgroup.
absl::Status ValidateVmId(absl::string_view vm_id);
// Keys: 1..63 of [A-Za-z0-9._/-], starting with a letter or digit; values:
// 0..63 of [A-Za-z0-9._-]; at most 64 labels.
absl::Status ValidateLabels(const Labels& labels);

class LabelSelector {
 public:
  static absl::StatusOr<LabelSelector> Parse(absl::string_view text);
  bool Matches(const Labels& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  struct Requirement {
    enum class Op { kEquals, kNotEquals, kExists, kNotExists };
    std::string key;
    Op op;
    std::string value;
  };
  std::vector<Requirement> requirements_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_LABELS_H_
