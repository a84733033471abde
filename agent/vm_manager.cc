// VmManager: start-up, persistence, create and delete, pre-boot
// configuration, and the reads served from the registry.
#include "agent/vm_manager.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/host_resources.h"
#include "agent/spec_diff.h"
#include "api/validate.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "google/protobuf/util/time_util.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;
namespace state = ::hearth::agent::v1;

namespace {

std::string KvmKind() {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) return "none";
  if (::access("/sys/module/kvm_pvm", F_OK) == 0) return "pvm";
  if (::access("/sys/module/kvm_intel", F_OK) == 0 || ::access("/sys/module/kvm_amd", F_OK) == 0) {
    return "hardware";
  }
  return "unknown";
}

Capacity CapacityOf(const ManagerOptions& options) {
  Capacity capacity{options.max_vcpus, options.max_memory_mib, options.max_vms};
  if (capacity.max_vcpus == 0) {
    capacity.max_vcpus = 4 * static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN));
  }
  if (capacity.max_memory_mib == 0) {
    capacity.max_memory_mib = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                              static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) / (1024 * 1024);
  }
  return capacity;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VmManager>> VmManager::Create(
    ManagerOptions options, std::unique_ptr<VmmLauncher> launcher) {
  ASSIGN_OR_RETURN(StateStore store, StateStore::Open(options.state_dir, options.state_write_hook));
  ASSIGN_OR_RETURN(ImageRoots roots, ImageRoots::Open(options.image_roots));
  std::unique_ptr<VmManager> manager(
      new VmManager(std::move(options), std::move(store), std::move(roots), std::move(launcher)));
  ASSIGN_OR_RETURN(manager->loop_, EventLoop::Create());
  return manager;
}

VmManager::VmManager(ManagerOptions options, StateStore store, ImageRoots roots,
                     std::unique_ptr<VmmLauncher> launcher)
    : options_(std::move(options)),
      store_(std::move(store)),
      roots_(std::move(roots)),
      launcher_(std::move(launcher)),
      registry_(CapacityOf(options_), options_.watch_history) {}

VmManager::~VmManager() { Stop(); }

absl::Status VmManager::Start() {
  std::vector<std::string> skipped;
  std::vector<state::VmRecord> records = store_.LoadVms(&skipped);
  for (const std::string& s : skipped) LOG(WARNING) << "state: skipped " << s;
  std::vector<api::Vm> vms;
  for (state::VmRecord& record : records) {
    auto entry = std::make_unique<ManagedVm>();
    entry->record = std::move(record);
    entry->console = std::make_shared<ConsoleBuffer>(options_.console_buffer_bytes);
    vms.push_back(entry->record.vm());
    registry_.SetConsole(entry->id(), entry->console);
    entries_[entry->id()] = std::move(entry);
  }
  registry_.Load(store_.LoadAgent().resource_version(), vms);
  reserved_version_ = registry_.version();
  LOG(INFO) << "loaded " << entries_.size() << " VM record(s); resource version "
            << reserved_version_;
  for (auto& [id, entry] : entries_) {
    if (!Live(entry->state())) continue;
    std::string vm_id = id;
    Post([this, vm_id] {
      if (ManagedVm* e = Find(vm_id)) Reattach(e);
    });
  }
  // Requests a VMM does not answer in time fail rather than hang the RPC.
  ASSIGN_OR_RETURN(TimerFd timer, TimerFd::Create());
  call_timer_ = std::move(timer);
  RETURN_IF_ERROR(call_timer_->Arm(options_.call_check_interval, options_.call_check_interval));
  RETURN_IF_ERROR(loop_->Add(call_timer_->fd(), [this](uint32_t) {
    absl::StatusOr<uint64_t> ticks = call_timer_->Read();
    if (!ticks.ok()) LOG(WARNING) << "call timer: " << ticks.status().message();
    ExpireCalls();
    SaveDirty();
  }));
  thread_ = std::thread([this] {
    absl::Status status = loop_->Run();
    if (!status.ok()) LOG(ERROR) << "supervisor loop: " << status.message();
  });
  return absl::OkStatus();
}

void VmManager::Stop() {
  if (!thread_.joinable()) return;
  loop_->Stop();
  thread_.join();
}

ManagedVm* VmManager::Find(const std::string& vm_id) {
  auto it = entries_.find(vm_id);
  return it == entries_.end() ? nullptr : it->second.get();
}

absl::StatusOr<ManagedVm*> VmManager::FindOr(const std::string& vm_id) {
  RETURN_IF_ERROR(ValidateVmId(vm_id));
  ManagedVm* entry = Find(vm_id);
  if (entry == nullptr) return VmNotFound(vm_id);
  return entry;
}

absl::StatusOr<ManagedVm*> VmManager::FindIn(const std::string& vm_id, Op op) {
  ASSIGN_OR_RETURN(ManagedVm * entry, FindOr(vm_id));
  RETURN_IF_ERROR(CheckPhase(op, vm_id, entry->state()));
  return entry;
}

absl::Status VmManager::ReserveVersion(uint64_t version) {
  if (version <= reserved_version_) return absl::OkStatus();
  // Versions never go back across restarts: persist a reservation ahead.
  state::AgentState agent;
  agent.set_resource_version(version + 1000);
  absl::Status saved = store_.SaveAgent(agent);
  if (saved.ok()) reserved_version_ = version + 1000;
  return saved;
}

absl::Status VmManager::Commit(ManagedVm* entry, api::WatchEvent::Type type) {
  // The supervisor is the only publisher: the registry gives `next`.
  const uint64_t next = registry_.version() + 1;
  absl::Status saved = ReserveVersion(next);
  entry->vm()->set_resource_version(next);
  if (type != api::WatchEvent::DELETED) {
    absl::Status record = store_.SaveVm(entry->record);
    entry->dirty = !record.ok();
    saved.Update(record);
  }
  registry_.Publish(entry->vm(), type);
  if (saved.ok()) return saved;
  LOG(ERROR) << "vm " << entry->id()
             << ": state not saved (retried every tick): " << saved.message();
  return absl::UnavailableError(absl::StrCat("the change to vm \"", entry->id(),
                                             "\" is not durable: the state directory ",
                                             store_.dir(), " failed: ", saved.message()));
}

void VmManager::Publish(ManagedVm* entry, api::WatchEvent::Type type) {
  // Commit logged a failure, and the record is saved again on the next tick.
  Commit(entry, type).IgnoreError();
}

absl::Status VmManager::CommitState(ManagedVm* entry, api::VmState new_state, std::string reason) {
  entry->SetState(new_state, std::move(reason), absl::Now());
  return Commit(entry, api::WatchEvent::MODIFIED);
}

void VmManager::SetState(ManagedVm* entry, api::VmState new_state, std::string reason) {
  entry->SetState(new_state, std::move(reason), absl::Now());
  Publish(entry, api::WatchEvent::MODIFIED);
}

void VmManager::SaveDirty() {
  if (reserved_version_ < registry_.version()) {
    absl::Status reserved = ReserveVersion(registry_.version());
    if (!reserved.ok()) return;  // the disk is still full: no point trying the records
  }
  for (auto& [id, entry] : entries_) {
    if (!entry->dirty) continue;
    absl::Status saved = store_.SaveVm(entry->record);
    if (!saved.ok()) return;
    entry->dirty = false;
    LOG(INFO) << "vm " << id << ": state saved after an earlier failure";
  }
}

uint32_t VmManager::FreeUid(const ManagedVm* except) const {
  std::set<uint32_t> used;
  for (const auto& [id, e] : entries_) {
    if (e.get() != except && e->record.uid() != 0) used.insert(e->record.uid());
  }
  uint32_t uid = options_.vmm_uid_base;
  while (used.count(uid)) ++uid;
  return uid;
}

// ----------------------------------------------------------------------------
// Creating and deleting.

void VmManager::CreateVm(const api::CreateVmRequest& request, Done<api::Vm> done) {
  absl::Status valid = ValidateVmId(request.vm_id());
  if (valid.ok()) valid = ValidateLabels(request.labels());
  if (valid.ok()) {
    valid = validate::ValidateVmConfig(request.config(), /*require_boot_source=*/request.start());
    if (!valid.ok()) valid = absl::Status(valid.code(), absl::StrCat("config.", valid.message()));
  }
  // Host paths are checked now, as the Put* calls check them, rather than
  // at boot after a VMM was started for nothing.
  if (valid.ok()) valid = CheckConfigResources(roots_, request.config(), "config.");
  if (!valid.ok()) return done(valid);
  Post([this, request, done] {
    if (ManagedVm* existing = Find(request.vm_id())) {
      api::CreateVmRequest before;
      *before.mutable_labels() = existing->record.vm().labels();
      *before.mutable_config() = existing->record.created_config();
      api::CreateVmRequest after;
      *after.mutable_labels() = request.labels();
      *after.mutable_config() = request.config();
      std::vector<std::string> differences = DifferingFields(before, after, "");
      if (!differences.empty()) {
        return done(absl::AlreadyExistsError(absl::StrCat("vm \"", request.vm_id(),
                                                          "\" exists with different ",
                                                          absl::StrJoin(differences, ", "))));
      }
      // An idempotent repeat. A create-and-start whose start never happened
      // (the agent restarted in between) starts now; one whose start is
      // under way gets that start's answer.
      if (request.start() && existing->state() == api::VM_STATE_CONFIGURING) {
        return StartNow(existing, done);
      }
      if (request.start() && existing->state() == api::VM_STATE_STARTING) {
        existing->start_waiters.push_back(done);
        return;
      }
      return done(existing->record.vm());
    }
    api::VmConfig spec = request.config();
    validate::FillMachineConfigDefaults(spec.mutable_machine_config());
    absl::Status admitted = registry_.Admit(spec, "");
    if (!admitted.ok()) return done(admitted);
    absl::Status spawned = AddVm(request.vm_id(), request.labels(), spec, request.config(), "");
    ManagedVm* entry = Find(request.vm_id());
    if (!spawned.ok() && entry != nullptr && !entry->pending_deletes.empty()) {
      // Abandoned (its record could not be saved): answered once it is gone.
      entry->pending_deletes.push_back([spawned, done](absl::StatusOr<bool>) { done(spawned); });
      return;
    }
    if (!spawned.ok()) return done(spawned);
    if (!request.start()) return done(entry->record.vm());
    // A create whose start fails leaves nothing: the VM is deleted before
    // the error is answered, so the corrected request can be sent again.
    std::string vm_id = request.vm_id();
    StartNow(entry, [this, vm_id, done](absl::StatusOr<api::Vm> started) {
      if (started.ok()) return done(started);
      absl::Status failed = started.status();
      DeleteVm(vm_id, /*force=*/true, [vm_id, failed, done](absl::StatusOr<bool> deleted) {
        if (!deleted.ok()) LOG(ERROR) << "vm " << vm_id << ": " << deleted.status();
        done(failed);
      });
    });
  });
}

absl::Status VmManager::AddVm(const std::string& vm_id, const Labels& labels,
                              const api::VmConfig& spec, const api::VmConfig& created_config,
                              const std::string& clone_key) {
  auto owned = std::make_unique<ManagedVm>();
  ManagedVm* entry = owned.get();
  entry->console = std::make_shared<ConsoleBuffer>(options_.console_buffer_bytes);
  entry->record.mutable_vm()->set_vm_id(vm_id);
  *entry->vm()->mutable_labels() = labels;
  *entry->vm()->mutable_spec() = spec;
  *entry->record.mutable_created_config() = created_config;
  entry->record.set_clone_key(clone_key);
  entry->vm()->set_state(api::VM_STATE_CONFIGURING);
  entry->vm()->mutable_status()->set_reason("starting the VMM");
  *entry->vm()->mutable_status()->mutable_created_at() =
      google::protobuf::util::TimeUtil::GetCurrentTime();
  launcher_->Plan(&entry->record, FreeUid(entry));
  // Intent before action: the record (uid, run directory, jail, cgroups)
  // is durable before anything is made on the host, so that an agent killed
  // at any instant after finds and adopts or removes it.
  absl::Status intent = store_.SaveVm(entry->record);
  if (!intent.ok()) {
    return absl::UnavailableError(absl::StrCat("vm \"", vm_id,
                                               "\" not created: the state directory ", store_.dir(),
                                               " failed: ", intent.message()));
  }
  entries_[vm_id] = std::move(owned);
  registry_.SetConsole(vm_id, entry->console);
  absl::Status spawned = SpawnVmm(entry);
  if (!spawned.ok()) {
    entry->SetState(api::VM_STATE_FAILED,
                    absl::StrCat("could not start the VMM: ", spawned.message()), absl::Now());
    Publish(entry, api::WatchEvent::ADDED);
    return absl::InternalError(entry->vm()->status().reason());
  }
  absl::Status committed = Commit(entry, api::WatchEvent::ADDED);
  if (!committed.ok()) {
    // The VMM runs but its record does not say so: nothing may run that a
    // restarted agent could not find. Stop it and forget the VM.
    entry->pending_deletes.push_back([vm_id](absl::StatusOr<bool> deleted) {
      if (!deleted.ok()) LOG(ERROR) << "vm " << vm_id << ": " << deleted.status();
    });
    absl::Status killed = launcher_->Kill(entry->process->handle);
    if (!killed.ok()) LOG(ERROR) << "vm " << vm_id << ": " << killed.message();
    return committed;
  }
  return absl::OkStatus();
}

void VmManager::DeleteVm(const std::string& vm_id, bool force, Done<bool> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, force, done] {
    ManagedVm* entry = Find(vm_id);
    if (entry == nullptr) return done(false);
    if (!force) {
      absl::Status allowed = CheckPhase(Op::kDelete, vm_id, entry->state());
      if (!allowed.ok()) return done(allowed);
    }
    if (!entry->process.has_value()) {
      entry->pending_deletes.push_back(done);
      return FinishDelete(entry);
    }
    // The exit handler finishes the deletion (and answers every DeleteVm
    // that waits for it).
    if (entry->pending_deletes.empty()) {
      absl::Status killed = launcher_->Kill(entry->process->handle);
      if (!killed.ok()) {
        return done(absl::InternalError(
            absl::StrCat("DeleteVm: vm \"", vm_id, "\": stopping the VMM: ", killed.message())));
      }
    }
    entry->pending_deletes.push_back(done);
  });
}

void VmManager::FinishDelete(ManagedVm* entry) {
  std::string vm_id = entry->id();
  CleanUpProcess(entry);
  launcher_->RemoveRunDir(entry->record);
  absl::Status removed = store_.DeleteVm(vm_id);
  if (!removed.ok()) LOG(ERROR) << "state: " << removed.message();
  std::vector<Done<bool>> waiting = std::move(entry->pending_deletes);
  Publish(entry, api::WatchEvent::DELETED);
  registry_.Forget(vm_id);
  entries_.erase(vm_id);
  LOG(INFO) << "vm " << vm_id << ": deleted";
  for (auto& done : waiting) done(true);
}

// ----------------------------------------------------------------------------
// Configuration and reads.

void VmManager::Configure(const std::string& vm_id,
                          std::function<absl::Status(api::VmConfig*)> mutate,
                          Done<api::VmConfig> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, mutate, done] {
    absl::StatusOr<ManagedVm*> found = FindIn(vm_id, Op::kConfigure);
    if (!found.ok()) return done(found.status());
    ManagedVm* entry = *found;
    api::VmConfig config = entry->vm()->spec();
    absl::Status changed = mutate(&config);
    if (changed.ok()) changed = validate::ValidateVmConfig(config, /*require_boot_source=*/false);
    if (changed.ok()) changed = registry_.Admit(config, vm_id);
    if (!changed.ok()) return done(changed);
    *entry->vm()->mutable_spec() = config;
    absl::Status committed = Commit(entry, api::WatchEvent::MODIFIED);
    if (!committed.ok()) return done(committed);
    done(config);
  });
}

absl::StatusOr<api::VmConfig> VmManager::GetConfig(const std::string& vm_id) const {
  ASSIGN_OR_RETURN(api::Vm vm, GetVm(vm_id));
  return vm.spec();
}

absl::StatusOr<api::Vm> VmManager::GetVm(const std::string& vm_id) const {
  return registry_.Get(vm_id);
}

absl::StatusOr<api::ListVmsResponse> VmManager::ListVms(const api::ListVmsRequest& request) const {
  return registry_.List(request);
}

absl::StatusOr<int> VmManager::Watch(const api::WatchVmsRequest& request,
                                     std::function<void(const api::WatchEvent&)> sink) {
  return registry_.Watch(request, std::move(sink));
}

void VmManager::Unwatch(int id) { registry_.Unwatch(id); }

absl::StatusOr<std::shared_ptr<ConsoleBuffer>> VmManager::Console(const std::string& vm_id) const {
  return registry_.Console(vm_id);
}

api::HostInfo VmManager::GetHostInfo() const {
  api::HostInfo info;
  char hostname[256] = {};
  if (::gethostname(hostname, sizeof(hostname) - 1) == 0) info.set_hostname(hostname);
  info.set_kvm_kind(KvmKind());
  const int cgroup_version = launcher_->cgroup_version();
  info.set_cgroup_version(static_cast<uint32_t>(cgroup_version));
  info.mutable_capacity()->set_vcpus(registry_.capacity().max_vcpus);
  info.mutable_capacity()->set_memory_mib(registry_.capacity().max_memory_mib);
  info.mutable_capacity()->set_max_vms(registry_.capacity().max_vms);
  *info.mutable_allocated() = registry_.Allocated();
  struct utsname uts;
  if (::uname(&uts) == 0) info.mutable_versions()->set_kernel(uts.release);
  info.mutable_versions()->set_agent(kAgentVersion);
  info.mutable_versions()->set_vmm(kAgentVersion);
  info.mutable_versions()->set_jailer(kAgentVersion);
  for (const char* feature : {"vsock", "balloon", "entropy", "rate-limiters", "watch",
                              "idempotent-create", "reattach", "snapshots", "clone"}) {
    info.add_features(feature);
  }
  info.add_features(cgroup_version == 2 ? "cgroup-v2" : "cgroup-v1");
  return info;
}

void VmManager::FlushAllMetrics(std::function<void()> done) {
  Post([this, done] {
    std::vector<std::string> ids;
    for (const auto& [id, entry] : entries_) {
      if (Allowed(Op::kFlushMetrics, entry->state())) ids.push_back(id);
    }
    if (ids.empty()) return done();
    auto remaining = std::make_shared<size_t>(ids.size());
    for (const std::string& id : ids) {
      // Runs on the supervisor thread: the counter needs no lock.
      FlushMetrics(id, [remaining, done](absl::StatusOr<std::string>) {
        if (--*remaining == 0) done();
      });
    }
  });
}

}  // namespace hearth::agent
