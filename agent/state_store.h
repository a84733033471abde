// hearthd's state directory: one record file per VM plus the agent-wide
// resource version, each written atomically (temporary file, fsync,
// rename, fsync of the directory) and framed with a magic, a length and a
// checksum, so that a torn or corrupt file is recognised and skipped on
// load rather than half-read.
#ifndef HEARTH_AGENT_STATE_STORE_H_
#define HEARTH_AGENT_STATE_STORE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hearth/agent/v1/state.pb.h"

namespace hearth::agent {

class StateStore {
 public:
  // Creates <dir> and <dir>/vms if needed.
  static absl::StatusOr<StateStore> Open(const std::string& dir);

  absl::Status SaveVm(const hearth::agent::v1::VmRecord& record) const;
  absl::Status DeleteVm(const std::string& vm_id) const;
  // Every readable record; files that are torn, corrupt or left over from an
  // interrupted write are skipped and described in *skipped.
  std::vector<hearth::agent::v1::VmRecord> LoadVms(std::vector<std::string>* skipped) const;

  absl::Status SaveAgent(const hearth::agent::v1::AgentState& state) const;
  hearth::agent::v1::AgentState LoadAgent() const;

  const std::string& dir() const { return dir_; }

  // Framing, exposed for tests: magic "HSR1", u32 length, u64 FNV-1a hash
  // of the payload, payload.
  static std::string Frame(const std::string& payload);
  static absl::StatusOr<std::string> Unframe(const std::string& file);

 private:
  explicit StateStore(std::string dir) : dir_(std::move(dir)) {}
  absl::Status WriteAtomically(const std::string& path, const std::string& contents) const;
  std::string dir_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_STATE_STORE_H_
