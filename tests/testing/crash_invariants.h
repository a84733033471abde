// Invariants that must hold after hearthd was killed at any instant and
// restarted (tests/agent_crash_test.cc). Each is a small class; the
// networking and security work add theirs (namespaces, links, IPAM leases,
// the uid range) by implementing CrashInvariant and appending it to the
// test's list.
#ifndef HEARTH_TESTS_TESTING_CRASH_INVARIANTS_H_
#define HEARTH_TESTS_TESTING_CRASH_INVARIANTS_H_

#include <sys/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hearth/v1/hearth.pb.h"

namespace hearth::testing {

// What an invariant sees after a restart, once no VM is STARTING.
struct HostView {
  hearth::v1::ListVmsResponse vms;
  // The running VMM processes this agent's host could own.
  std::set<pid_t> vmms;
  // The agent's directory: run/, state/, images/.
  std::string agent_dir;
};

class CrashInvariant {
 public:
  virtual ~CrashInvariant() = default;
  virtual std::string name() const = 0;
  // One line per violation; empty when it holds. May keep state across
  // rounds (e.g. the last version seen).
  virtual std::vector<std::string> Check(const HostView& view) = 0;
};

// Hearth's own: resource versions never go back; nothing stays STARTING;
// an ended VM says why and has no VMM; a VM that should have a VMM has a
// live one of its own; no VMM runs without a VM; no run directory outlives
// its VM.
std::vector<std::unique_ptr<CrashInvariant>> AgentInvariants();

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_CRASH_INVARIANTS_H_
