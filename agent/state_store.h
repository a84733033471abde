// hearthd's state directory: one record file per VM plus the agent-wide
// resource version, each written atomically (temporary file, fsync,
// rename, fsync of the directory; a failed write leaves no temporary file
// and reports which step failed, naming the file) and framed with a magic, a length and a
// checksum, so that a torn or corrupt file is recognised and skipped on
// load rather than half-read.
#ifndef HEARTH_AGENT_STATE_STORE_H_
#define HEARTH_AGENT_STATE_STORE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hearth/agent/v1/state.pb.h"

namespace hearth::agent {

class StateStore {
 public:
  // Runs after the bytes of every write, before its fsync, with the
  // temporary file's path; an error fails the write as the disk would
  // (tests: a full or failing disk).
  using WriteHook = std::function<absl::Status(const std::string& path)>;

  // Creates <dir> and <dir>/vms if needed.
  static absl::StatusOr<StateStore> Open(const std::string& dir, WriteHook hook = nullptr);

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
  StateStore(std::string dir, WriteHook hook) : dir_(std::move(dir)), hook_(std::move(hook)) {}
  absl::Status WriteAtomically(const std::string& path, const std::string& contents) const;
  // The write itself; WriteAtomically removes the temporary file if it fails.
  absl::Status WriteTemp(const std::string& temp, const std::string& contents) const;
  std::string dir_;
  WriteHook hook_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_STATE_STORE_H_
