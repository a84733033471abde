// VmManager: snapshots. CreateSnapshot of a PAUSED VM into files beneath
// the image roots; LoadSnapshot into a VM that is CONFIGURING with nothing
// but logger and metrics configured; CloneVm: one snapshot into several new
// VMs, all or nothing. The decisions are restore_plan.h's; restoring takes
// the one start path (vm_runtime.cc).
#include <fcntl.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/host_resources.h"
#include "agent/restore_plan.h"
#include "agent/snapshot_files.h"
#include "agent/vm_manager.h"
#include "api/validate.h"
#include "glog/logging.h"
#include "vmm/snapshot/format.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;
namespace control = ::hearth::vmm::v1;

namespace {

// Snapshots write or map all of guest memory: they get longer than an
// ordinary call.
constexpr absl::Duration kSnapshotCallTimeout = absl::Minutes(10);

absl::Status CheckCreateParams(const api::SnapshotCreateParams& params, const std::string& type) {
  if (type != "Full" && type != "Diff") {
    return absl::InvalidArgumentError(absl::StrCat(
        "params.snapshot_type: \"", absl::CHexEscape(type), "\" is not one of Full, Diff"));
  }
  if (params.snapshot_path().empty()) {
    return absl::InvalidArgumentError("params.snapshot_path: required");
  }
  if (params.mem_file_path().empty()) {
    return absl::InvalidArgumentError("params.mem_file_path: required");
  }
  if (params.mem_file_path() == params.snapshot_path()) {
    return absl::InvalidArgumentError("params.mem_file_path: the same file as snapshot_path");
  }
  return absl::OkStatus();
}

// Drops the clones this request made, after a failure (all or nothing),
// and then runs `then`: the client hears of the failure only once its
// clones are gone.
void RollBack(VmApi* api, const std::vector<std::string>& created, std::function<void()> then) {
  if (created.empty()) return then();
  auto remaining = std::make_shared<size_t>(created.size());
  for (const std::string& id : created) {
    // Completions run on the supervisor thread: the counter needs no lock.
    api->DeleteVm(id, /*force=*/true, [id, remaining, then](absl::StatusOr<bool> deleted) {
      if (!deleted.ok()) LOG(ERROR) << "clone " << id << ": rollback: " << deleted.status();
      if (--*remaining == 0) then();
    });
  }
}

}  // namespace

void VmManager::CreateSnapshot(const std::string& vm_id, const api::SnapshotCreateParams& params,
                               Done<api::CreateSnapshotResponse> done) {
  const std::string type = params.snapshot_type().empty() ? "Full" : params.snapshot_type();
  absl::Status valid = ValidateVmId(vm_id);
  if (valid.ok()) valid = CheckCreateParams(params, type);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, params, type, done] {
    absl::StatusOr<ManagedVm*> found = FindIn(vm_id, Op::kCreateSnapshot);
    if (!found.ok()) return done(found.status());
    ManagedVm* entry = *found;
    if (type == "Diff" && !entry->vm()->spec().machine_config().track_dirty_pages()) {
      return done(absl::FailedPreconditionError(
          "params.snapshot_type: a Diff snapshot needs machine_config.track_dirty_pages (or "
          "track_dirty_pages on LoadSnapshot)"));
    }
    // One snapshot at a time to a path: each one clears what an interrupted
    // one left beside it.
    for (const std::string& path : {params.snapshot_path(), params.mem_file_path()}) {
      if (snapshot_paths_.count(path)) {
        return done(absl::FailedPreconditionError(
            absl::StrCat("CreateSnapshot: a snapshot to ", path, " is being written")));
      }
    }
    // Written under temporary names and renamed into place once complete:
    // an existing snapshot at these paths survives a failed or interrupted
    // write. The memory file goes first, the state file (which names the
    // snapshot) last.
    absl::StatusOr<SnapshotOutput> state =
        SnapshotOutput::Create(roots_, "params.snapshot_path", params.snapshot_path());
    if (!state.ok()) return done(state.status());
    absl::StatusOr<SnapshotOutput> memory =
        SnapshotOutput::Create(roots_, "params.mem_file_path", params.mem_file_path());
    if (!memory.ok()) return done(memory.status());
    absl::StatusOr<UniqueFd> state_fd = state->Dup();
    absl::StatusOr<UniqueFd> memory_fd = memory->Dup();
    if (!state_fd.ok() || !memory_fd.ok()) {
      return done(state_fd.ok() ? memory_fd.status() : state_fd.status());
    }
    control::Request request;
    request.mutable_create_snapshot()->set_snapshot_type(type);
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(*state_fd));
    fds.push_back(std::move(*memory_fd));
    const absl::Time start = absl::Now();
    auto outputs = std::make_shared<std::pair<SnapshotOutput, SnapshotOutput>>(std::move(*state),
                                                                               std::move(*memory));
    const std::vector<std::string> paths = {params.snapshot_path(), params.mem_file_path()};
    for (const std::string& path : paths) snapshot_paths_.insert(path);
    Call(
        entry, request, std::move(fds),
        [this, vm_id, done, start, outputs, paths](absl::StatusOr<control::Response> r) mutable {
          for (const std::string& path : paths) snapshot_paths_.erase(path);
          absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
          if (s.ok()) s = outputs->second.Commit();
          if (s.ok()) s = outputs->first.Commit();
          // The temporary files are gone before the client hears of it.
          outputs.reset();
          if (!s.ok()) return done(s);
          api::CreateSnapshotResponse response;
          response.set_state_bytes(r->snapshot_created().state_bytes());
          response.set_memory_bytes(r->snapshot_created().memory_bytes());
          response.set_duration_us(
              static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start)));
          LOG(INFO) << "vm " << vm_id << ": snapshot written, " << response.state_bytes()
                    << " state bytes, " << response.memory_bytes() << " memory bytes in "
                    << response.duration_us() << " us";
          done(response);
        },
        kSnapshotCallTimeout);
  });
}

void VmManager::LoadSnapshot(const std::string& vm_id, const api::SnapshotLoadParams& params,
                             Done<api::Vm> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, params, done] { RestoreInto(vm_id, params, {}, done); });
}

void VmManager::RestoreInto(const std::string& vm_id, const api::SnapshotLoadParams& params,
                            std::vector<api::DriveOverride> drive_overrides, Done<api::Vm> done) {
  absl::StatusOr<ManagedVm*> found = FindIn(vm_id, Op::kLoadSnapshot);
  if (!found.ok()) return done(found.status());
  ManagedVm* entry = *found;
  const api::VmConfig previous = entry->vm()->spec();
  if (!OnlyLoggerAndMetrics(previous)) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "LoadSnapshot: vm \"", vm_id,
        "\" is already configured; only logger and metrics may be set before a snapshot load")));
  }
  if (!entry->process.has_value()) {
    return done(
        absl::FailedPreconditionError(absl::StrCat("LoadSnapshot: vm \"", vm_id, "\" has no VMM")));
  }
  absl::StatusOr<std::string> memory_path = CheckLoadParams(params);
  if (!memory_path.ok()) return done(memory_path.status());
  absl::StatusOr<UniqueFd> state_file =
      roots_.OpenFile("params.snapshot_path", params.snapshot_path(), O_RDONLY);
  if (!state_file.ok()) return done(state_file.status());
  absl::StatusOr<vmm::v1::VmSnapshot> snapshot = snapshot::ReadStateFile(state_file->get());
  if (!snapshot.ok()) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "params.snapshot_path: ", params.snapshot_path(), ": ", snapshot.status().message())));
  }
  absl::StatusOr<UniqueFd> memory_file =
      roots_.OpenFile("params.mem_backend.backend_path", *memory_path, O_RDONLY);
  if (!memory_file.ok()) return done(memory_file.status());

  absl::StatusOr<api::VmConfig> spec =
      PlanRestore(snapshot->config(), params, drive_overrides, previous);
  absl::Status usable = spec.status();
  if (usable.ok()) usable = CheckConfigResources(roots_, *spec, "snapshot config.");
  if (usable.ok()) usable = registry_.Admit(*spec, vm_id);
  if (!usable.ok()) return done(usable);

  *entry->vm()->mutable_spec() = *spec;
  StartPlan plan;
  control::LoadSnapshot* load = plan.request.mutable_load_snapshot();
  load->set_resume_vm(params.resume_vm());
  load->set_track_dirty_pages(spec->machine_config().track_dirty_pages());
  plan.boot = false;
  plan.extra_fds.push_back(std::move(*state_file));
  plan.extra_fds.push_back(std::move(*memory_file));
  plan.reason = "restoring a snapshot";
  plan.success_state = params.resume_vm() ? api::VM_STATE_RUNNING : api::VM_STATE_PAUSED;
  plan.success_reason = params.resume_vm() ? "" : "restored from a snapshot, paused";
  plan.previous_spec = previous;
  plan.timeout = kSnapshotCallTimeout;
  RunStart(entry, std::move(plan), done);
}

void VmManager::CloneVm(const api::CloneVmRequest& request, Done<api::CloneVmResponse> done) {
  absl::Status valid = CheckCloneRequest(request);
  if (!valid.ok()) return done(valid);
  Post([this, request, done] { CloneOnLoop(request, done); });
}

void VmManager::CloneOnLoop(const api::CloneVmRequest& request, Done<api::CloneVmResponse> done) {
  // The snapshot's machine, read once: the clones are admitted against the
  // host's capacity together, before any VMM is started, and hold their
  // size from the start.
  absl::StatusOr<UniqueFd> state_file =
      roots_.OpenFile("snapshot_path", request.snapshot_path(), O_RDONLY);
  if (!state_file.ok()) return done(state_file.status());
  absl::StatusOr<vmm::v1::VmSnapshot> snapshot = snapshot::ReadStateFile(state_file->get());
  if (!snapshot.ok()) {
    return done(absl::InvalidArgumentError(absl::StrCat("snapshot_path: ", request.snapshot_path(),
                                                        ": ", snapshot.status().message())));
  }
  api::VmConfig sized;
  *sized.mutable_machine_config() = snapshot->config().machine_config();
  validate::FillMachineConfigDefaults(sized.mutable_machine_config());
  uint32_t fresh = 0;
  for (const api::CloneSpec& clone : request.clones()) {
    if (Find(clone.vm_id()) == nullptr) ++fresh;
  }
  if (fresh > 0) {
    absl::Status admitted = registry_.Admit(sized, "", fresh);
    if (!admitted.ok()) {
      return done(
          absl::Status(admitted.code(), absl::StrCat(fresh, " clones: ", admitted.message())));
    }
  }
  // Which clones exist already (from this same request: kept), which are new.
  std::vector<std::string> created;
  for (int i = 0; i < request.clones_size(); ++i) {
    const api::CloneSpec& clone = request.clones(i);
    const std::string key = CloneKey(request, clone);
    if (ManagedVm* existing = Find(clone.vm_id())) {
      if (existing->record.clone_key() == key) continue;
      absl::Status exists = absl::AlreadyExistsError(
          absl::StrCat("clones[", i, "].vm_id: vm \"", clone.vm_id(),
                       "\" exists and was not made by this clone request"));
      return RollBack(this, created, [done, exists] { done(exists); });
    }
    absl::Status added = AddVm(clone.vm_id(), clone.labels(), sized, api::VmConfig(), key);
    created.push_back(clone.vm_id());  // a failed one exists too (FAILED)
    if (!added.ok()) {
      absl::Status failed(added.code(), absl::StrCat("clones[", i, "] (vm \"", clone.vm_id(),
                                                     "\"): ", added.message()));
      return RollBack(this, created, [done, failed] { done(failed); });
    }
  }
  // Restore into every new clone at once; answer when all have.
  struct Progress {
    size_t remaining = 0;
    absl::Status first_error;
  };
  auto progress = std::make_shared<Progress>();
  progress->remaining = created.size();
  auto finish = [this, request, created, progress, done] {
    if (!progress->first_error.ok()) {
      absl::Status failed = progress->first_error;
      return RollBack(this, created, [done, failed] { done(failed); });
    }
    api::CloneVmResponse response;
    for (const api::CloneSpec& clone : request.clones()) {
      if (ManagedVm* e = Find(clone.vm_id())) *response.add_vms() = e->record.vm();
    }
    done(response);
  };
  if (created.empty()) return finish();
  for (int i = 0; i < request.clones_size(); ++i) {
    const api::CloneSpec& clone = request.clones(i);
    if (std::find(created.begin(), created.end(), clone.vm_id()) == created.end()) continue;
    std::vector<api::DriveOverride> drives(clone.drive_overrides().begin(),
                                           clone.drive_overrides().end());
    std::string id = clone.vm_id();
    RestoreInto(id, CloneLoadParams(request, clone), std::move(drives),
                [progress, finish, i, id](absl::StatusOr<api::Vm> vm) {
                  if (!vm.ok() && progress->first_error.ok()) {
                    progress->first_error = absl::Status(
                        vm.status().code(),
                        absl::StrCat("clones[", i, "] (vm \"", id, "\"): ", vm.status().message()));
                  }
                  if (--progress->remaining == 0) finish();
                });
  }
}

}  // namespace hearth::agent
