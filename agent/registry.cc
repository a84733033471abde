#include "agent/registry.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/phases.h"
#include "api/validate.h"
#include "common/status_macros.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;

absl::Status VmNotFound(const std::string& vm_id) {
  return absl::NotFoundError(absl::StrCat("vm \"", vm_id, "\" not found"));
}

void Registry::Load(uint64_t version, const std::vector<api::Vm>& vms) {
  absl::MutexLock lock(&mutex_);
  for (const api::Vm& vm : vms) {
    vms_[vm.vm_id()] = vm;
    version = std::max(version, vm.resource_version());
  }
  version_ = version;
}

uint64_t Registry::Publish(api::Vm* vm, api::WatchEvent::Type type) {
  absl::MutexLock lock(&mutex_);
  vm->set_resource_version(++version_);
  if (type == api::WatchEvent::DELETED) {
    vms_.erase(vm->vm_id());
  } else {
    vms_[vm->vm_id()] = *vm;
  }
  api::WatchEvent event;
  event.set_type(type);
  *event.mutable_vm() = *vm;
  event.set_resource_version(version_);
  for (const auto& [id, watcher] : watchers_) {
    if ((watcher.vm_id.empty() || watcher.vm_id == vm->vm_id()) &&
        watcher.selector.Matches(vm->labels())) {
      watcher.sink(event);
    }
  }
  history_bytes_ += event.ByteSizeLong();
  history_.push_back(std::move(event));
  while (!history_.empty() &&
         (history_.size() > history_limits_.entries || history_bytes_ > history_limits_.bytes)) {
    history_bytes_ -= history_.front().ByteSizeLong();
    history_.pop_front();
  }
  return version_;
}

uint64_t Registry::version() const {
  absl::MutexLock lock(&mutex_);
  return version_;
}

absl::StatusOr<api::Vm> Registry::Get(const std::string& vm_id) const {
  RETURN_IF_ERROR(ValidateVmId(vm_id));
  absl::MutexLock lock(&mutex_);
  auto it = vms_.find(vm_id);
  if (it == vms_.end()) return VmNotFound(vm_id);
  return it->second;
}

absl::StatusOr<api::ListVmsResponse> Registry::List(const api::ListVmsRequest& request) const {
  ASSIGN_OR_RETURN(LabelSelector selector, LabelSelector::Parse(request.label_selector()));
  std::string after;
  if (!request.page_token().empty()) {
    std::string token;
    if (!absl::WebSafeBase64Unescape(request.page_token(), &token)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    std::vector<std::string> parts = absl::StrSplit(token, absl::MaxSplits('\n', 1));
    if (parts.size() != 2 || parts[0] != request.label_selector()) {
      return absl::InvalidArgumentError(
          "page_token: not from a ListVms with the same label_selector");
    }
    after = parts[1];
  }
  uint32_t page_size = request.page_size() == 0 ? 100 : std::min(request.page_size(), 1000u);
  api::ListVmsResponse response;
  absl::MutexLock lock(&mutex_);
  response.set_resource_version(version_);
  for (auto it = vms_.upper_bound(after); it != vms_.end(); ++it) {
    if (!selector.Matches(it->second.labels())) continue;
    if (static_cast<uint32_t>(response.vms_size()) == page_size) {
      response.set_next_page_token(absl::WebSafeBase64Escape(
          absl::StrCat(request.label_selector(), "\n", response.vms().rbegin()->vm_id())));
      break;
    }
    *response.add_vms() = it->second;
  }
  return response;
}

absl::StatusOr<int> Registry::Watch(const api::WatchVmsRequest& request, Sink sink) {
  ASSIGN_OR_RETURN(LabelSelector selector, LabelSelector::Parse(request.label_selector()));
  if (!request.vm_id().empty()) RETURN_IF_ERROR(ValidateVmId(request.vm_id()));
  auto matches = [&](const api::Vm& vm) {
    return (request.vm_id().empty() || vm.vm_id() == request.vm_id()) &&
           selector.Matches(vm.labels());
  };
  absl::MutexLock lock(&mutex_);
  const uint64_t from = request.resource_version();
  if (from == 0) {
    for (const auto& [id, vm] : vms_) {
      if (!matches(vm)) continue;
      api::WatchEvent event;
      event.set_type(api::WatchEvent::ADDED);
      *event.mutable_vm() = vm;
      event.set_resource_version(vm.resource_version());
      sink(event);
    }
    api::WatchEvent bookmark;
    bookmark.set_type(api::WatchEvent::BOOKMARK);
    bookmark.set_resource_version(version_);
    sink(bookmark);
  } else {
    if (from > version_) {
      return absl::OutOfRangeError(
          absl::StrCat("resource_version ", from, " is in the future (current ", version_, ")"));
    }
    // With no history (just after a start) only the current version itself
    // can be resumed from: nothing is known of what came before it.
    uint64_t oldest = history_.empty() ? version_ + 1 : history_.front().resource_version();
    if (from + 1 < oldest) {
      return absl::OutOfRangeError(
          absl::StrCat("resource_version ", from, " is older than the retained history (oldest ",
                       oldest, "): list again and watch from the list's resource_version"));
    }
    for (const api::WatchEvent& event : history_) {
      if (event.resource_version() > from && matches(event.vm())) sink(event);
    }
  }
  int id = next_watcher_++;
  watchers_[id] = Watcher{std::move(selector), request.vm_id(), std::move(sink)};
  return id;
}

void Registry::Unwatch(int id) {
  absl::MutexLock lock(&mutex_);
  watchers_.erase(id);
}

size_t Registry::watchers() const {
  absl::MutexLock lock(&mutex_);
  return watchers_.size();
}

void Registry::SendBookmarks() {
  absl::MutexLock lock(&mutex_);
  api::WatchEvent bookmark;
  bookmark.set_type(api::WatchEvent::BOOKMARK);
  bookmark.set_resource_version(version_);
  for (const auto& [id, watcher] : watchers_) watcher.sink(bookmark);
}

size_t Registry::history_entries() const {
  absl::MutexLock lock(&mutex_);
  return history_.size();
}

size_t Registry::history_bytes() const {
  absl::MutexLock lock(&mutex_);
  return history_bytes_;
}

api::HostAllocation Registry::AllocatedLocked(const std::string& except_vm) const {
  api::HostAllocation allocated;
  for (const auto& [id, vm] : vms_) {
    if (id == except_vm || !Live(vm.state())) continue;
    allocated.set_vcpus(allocated.vcpus() + validate::VcpuCount(vm.spec().machine_config()));
    allocated.set_memory_mib(allocated.memory_mib() +
                             validate::MemSizeMib(vm.spec().machine_config()));
    allocated.set_vms(allocated.vms() + 1);
  }
  return allocated;
}

api::HostAllocation Registry::Allocated(const std::string& except_vm) const {
  absl::MutexLock lock(&mutex_);
  return AllocatedLocked(except_vm);
}

absl::Status Registry::Admit(const api::VmConfig& config, const std::string& except_vm,
                             uint32_t count) const {
  absl::MutexLock lock(&mutex_);
  api::HostAllocation allocated = AllocatedLocked(except_vm);
  uint64_t vcpus =
      uint64_t{validate::VcpuCount(config.machine_config())} * count + allocated.vcpus();
  uint64_t memory =
      uint64_t{validate::MemSizeMib(config.machine_config())} * count + allocated.memory_mib();
  uint64_t vms = uint64_t{count} + allocated.vms();
  if (vms > capacity_.max_vms) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the host runs its maximum of ", capacity_.max_vms, " VMs"));
  }
  if (vcpus > capacity_.max_vcpus) {
    return absl::ResourceExhaustedError(absl::StrCat("not enough vCPU capacity: ", vcpus,
                                                     " needed in all, the host admits ",
                                                     capacity_.max_vcpus));
  }
  if (memory > capacity_.max_memory_mib) {
    return absl::ResourceExhaustedError(absl::StrCat("not enough memory capacity: ", memory,
                                                     " MiB needed in all, the host admits ",
                                                     capacity_.max_memory_mib, " MiB"));
  }
  return absl::OkStatus();
}

void Registry::SetConsole(const std::string& vm_id, std::shared_ptr<ConsoleBuffer> console) {
  absl::MutexLock lock(&mutex_);
  consoles_[vm_id] = std::move(console);
}

absl::StatusOr<std::shared_ptr<ConsoleBuffer>> Registry::Console(const std::string& vm_id) const {
  RETURN_IF_ERROR(ValidateVmId(vm_id));
  absl::MutexLock lock(&mutex_);
  auto it = consoles_.find(vm_id);
  if (it == consoles_.end()) return VmNotFound(vm_id);
  return it->second;
}

void Registry::SetMetrics(const std::string& vm_id, std::string json) {
  absl::MutexLock lock(&mutex_);
  metrics_[vm_id] = std::move(json);
}

std::map<std::string, std::string> Registry::LastMetrics() const {
  absl::MutexLock lock(&mutex_);
  return metrics_;
}

void Registry::Forget(const std::string& vm_id) {
  absl::MutexLock lock(&mutex_);
  consoles_.erase(vm_id);
  metrics_.erase(vm_id);
}

}  // namespace hearth::agent
