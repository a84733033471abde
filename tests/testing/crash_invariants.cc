#include "tests/testing/crash_invariants.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "tests/testing/agent.h"

namespace hearth::testing {

namespace {

namespace api = ::hearth::v1;

bool Ended(const api::Vm& vm) {
  return vm.state() == api::VM_STATE_FAILED || vm.state() == api::VM_STATE_STOPPED;
}

class VersionsMonotonic : public CrashInvariant {
 public:
  std::string name() const override { return "resource versions never go back"; }
  std::vector<std::string> Check(const HostView& view) override {
    std::vector<std::string> violations;
    if (view.vms.resource_version() < last_) {
      violations.push_back(absl::StrCat("version ", view.vms.resource_version(), " after ", last_));
    }
    last_ = std::max(last_, view.vms.resource_version());
    return violations;
  }

 private:
  uint64_t last_ = 0;
};

class VmsConverge : public CrashInvariant {
 public:
  std::string name() const override { return "every VM converges and says why it ended"; }
  std::vector<std::string> Check(const HostView& view) override {
    std::vector<std::string> violations;
    for (const api::Vm& vm : view.vms.vms()) {
      if (vm.state() == api::VM_STATE_STARTING) {
        violations.push_back(absl::StrCat(vm.vm_id(), " stays STARTING"));
      }
      if (Ended(vm) && vm.status().reason().empty()) {
        violations.push_back(absl::StrCat(vm.vm_id(), " ended without a reason"));
      }
      if (Ended(vm) && vm.status().vmm_pid() != 0) {
        violations.push_back(
            absl::StrCat(vm.vm_id(), " ended but names VMM ", vm.status().vmm_pid()));
      }
    }
    return violations;
  }
};

class OneVmmPerVm : public CrashInvariant {
 public:
  std::string name() const override { return "one live VMM per VM, none without a VM"; }
  std::vector<std::string> Check(const HostView& view) override {
    std::vector<std::string> violations;
    std::map<pid_t, std::string> owner;
    for (const api::Vm& vm : view.vms.vms()) {
      if (Ended(vm)) continue;
      const pid_t pid = vm.status().vmm_pid();
      if (pid <= 0 || !ProcessAlive(pid)) {
        violations.push_back(absl::StrCat(vm.vm_id(), " has no live VMM (pid ", pid, ")"));
      } else if (!owner.emplace(pid, vm.vm_id()).second) {
        violations.push_back(absl::StrCat(vm.vm_id(), " and ", owner[pid], " share VMM ", pid));
      }
    }
    for (pid_t pid : view.vmms) {
      if (!owner.count(pid)) violations.push_back(absl::StrCat("VMM ", pid, " runs with no VM"));
    }
    return violations;
  }
};

class NoOrphanRunDirs : public CrashInvariant {
 public:
  std::string name() const override { return "no run directory outlives its VM"; }
  std::vector<std::string> Check(const HostView& view) override {
    std::set<std::string> listed;
    for (const api::Vm& vm : view.vms.vms()) listed.insert(vm.vm_id());
    std::vector<std::string> violations;
    for (const std::string& name : DirEntries(view.agent_dir + "/run/vms")) {
      if (!listed.count(name))
        violations.push_back(absl::StrCat("run directory of unknown VM ", name));
    }
    return violations;
  }
};

}  // namespace

std::vector<std::unique_ptr<CrashInvariant>> AgentInvariants() {
  std::vector<std::unique_ptr<CrashInvariant>> invariants;
  invariants.push_back(std::make_unique<VersionsMonotonic>());
  invariants.push_back(std::make_unique<VmsConverge>());
  invariants.push_back(std::make_unique<OneVmmPerVm>());
  invariants.push_back(std::make_unique<NoOrphanRunDirs>());
  return invariants;
}

}  // namespace hearth::testing
