// VmManager: the one start path (InstanceStart, LoadSnapshot and every
// clone take it) and the calls forwarded to a running VMM.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/boot_resources.h"
#include "agent/host_resources.h"
#include "agent/vm_manager.h"
#include "api/validate.h"
#include "glog/logging.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;
namespace control = ::hearth::vmm::v1;

namespace {

uint64_t MicrosSince(absl::Time t) {
  return static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - t));
}

// The FdMap of a Boot or LoadSnapshot request.
control::FdMap* FdMapOf(control::Request* request) {
  return request->has_boot() ? request->mutable_boot()->mutable_fds()
                             : request->mutable_load_snapshot()->mutable_fds();
}

}  // namespace

absl::Status VmManager::CheckVsockPathFree(const ManagedVm* entry) const {
  const api::VmConfig& spec = entry->record.vm().spec();
  if (!spec.has_vsock()) return absl::OkStatus();
  for (const auto& [other_id, other] : entries_) {
    const api::VmConfig& theirs = other->record.vm().spec();
    // Only a VM whose socket is bound holds the path (CONFIGURING ones have
    // not bound theirs yet).
    if (other.get() != entry && other->record.vsock_ino() != 0 && theirs.has_vsock() &&
        theirs.vsock().uds_path() == spec.vsock().uds_path()) {
      return absl::FailedPreconditionError(
          absl::StrCat("vsock.uds_path: ", spec.vsock().uds_path(), " is used by vm \"", other_id,
                       "\" (each VM needs its own; a restore can set one with vsock_override)"));
    }
  }
  return absl::OkStatus();
}

void VmManager::RunStart(ManagedVm* entry, StartPlan plan, Done<api::Vm> done) {
  if (!entry->process.has_value()) {
    return done(absl::FailedPreconditionError(
        absl::StrCat(OpName(plan.boot ? Op::kInstanceStart : Op::kLoadSnapshot), ": vm \"",
                     entry->id(), "\" has no VMM")));
  }
  absl::Status ready = CheckVsockPathFree(entry);
  if (!ready.ok()) {
    if (plan.previous_spec.has_value()) *entry->vm()->mutable_spec() = *plan.previous_spec;
    return done(ready);
  }
  control::FdMap* map = FdMapOf(&plan.request);
  absl::StatusOr<BootResources> resources =
      OpenBootResources(roots_, entry->vm()->spec(), plan.boot, map);
  ready = resources.status();
  if (ready.ok()) {
    if (!plan.boot) {
      map->set_snapshot_state(static_cast<int32_t>(resources->fds.size()));
      map->set_snapshot_memory(static_cast<int32_t>(resources->fds.size() + 1));
    }
    for (UniqueFd& fd : plan.extra_fds) resources->fds.push_back(std::move(fd));
    ready = launcher_->ApplyLimits(entry->record, entry->vm()->spec());
  }
  if (ready.ok()) ready = WatchConsole(entry, std::move(resources->console));
  if (!ready.ok()) {
    // Nothing was sent: the VM is as it was (the client can fix it).
    if (plan.previous_spec.has_value()) *entry->vm()->mutable_spec() = *plan.previous_spec;
    return done(ready);
  }
  entry->serial_out = std::move(resources->serial_out);
  entry->log_reader = std::move(resources->log_reader);
  entry->record.set_vsock_dev(resources->vsock_dev);
  entry->record.set_vsock_ino(resources->vsock_ino);
  entry->start_requested = absl::Now();
  SetState(entry, api::VM_STATE_STARTING, plan.reason);
  std::string id = entry->id();
  auto fds = std::make_shared<std::vector<UniqueFd>>(std::move(resources->fds));
  auto shared_plan = std::make_shared<StartPlan>(std::move(plan));
  WhenReady(entry, [this, id, fds, shared_plan, done](absl::Status ready) {
    ManagedVm* e = Find(id);
    if (e == nullptr) return done(VmNotFound(id));
    // The VMM died before it could take the request: the VM is FAILED
    // (its exit says why), and retrying would not help.
    if (!ready.ok()) return done(absl::InternalError(ready.message()));
    Call(
        e, shared_plan->request, std::move(*fds),
        [this, id, shared_plan, done](absl::StatusOr<control::Response> response) {
          OnStartAnswer(id, *shared_plan, std::move(response), done);
        },
        shared_plan->timeout);
  });
}

void VmManager::OnStartAnswer(const std::string& vm_id, const StartPlan& plan,
                              absl::StatusOr<control::Response> response, Done<api::Vm> done) {
  ManagedVm* e = Find(vm_id);
  if (e == nullptr) return done(VmNotFound(vm_id));
  absl::Status status = response.ok() ? VmmConnection::StatusOf(*response) : response.status();
  if (status.ok()) {
    e->vm()->mutable_status()->mutable_boot_timing()->set_start_to_running_us(
        MicrosSince(e->start_requested));
    absl::Status committed = CommitState(e, plan.success_state, plan.success_reason);
    if (!committed.ok()) return done(committed);
    return done(e->record.vm());
  }
  if (e->state() == api::VM_STATE_STARTING && e->process.has_value() &&
      plan.previous_spec.has_value() && absl::IsInvalidArgument(status)) {
    // A load refused before anything was built: the VMM still waits, and
    // the VM is as it was.
    StopServing(e->process->console.get());
    e->process->console.Reset();
    e->serial_out.Reset();
    *e->vm()->mutable_spec() = *plan.previous_spec;
    SetState(e, api::VM_STATE_CONFIGURING,
             absl::StrCat("snapshot load refused: ", status.message()));
    return done(status);
  }
  // The VMM died while building the VM: it is FAILED, and retrying the
  // call would not help.
  if (absl::IsUnavailable(status)) status = absl::InternalError(status.message());
  if (plan.boot && e->state() == api::VM_STATE_STARTING) {
    SetState(e, api::VM_STATE_FAILED, absl::StrCat("boot failed: ", status.message()));
    if (e->process.has_value()) {
      absl::Status killed = launcher_->Kill(e->process->handle);
      if (!killed.ok()) LOG(ERROR) << "vm " << vm_id << ": " << killed.message();
    }
  }
  done(status);
}

void VmManager::InstanceStart(const std::string& vm_id, Done<api::Vm> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, done] {
    absl::StatusOr<ManagedVm*> found = FindIn(vm_id, Op::kInstanceStart);
    if (!found.ok()) return done(found.status());
    StartNow(*found, done);
  });
}

void VmManager::StartNow(ManagedVm* entry, Done<api::Vm> done) {
  const std::string id = entry->id();
  const api::VmConfig& spec = entry->vm()->spec();
  if (!spec.has_boot_source()) {
    return done(absl::FailedPreconditionError(
        absl::StrCat("InstanceStart: vm \"", id, "\" has no boot_source (PutBootSource first)")));
  }
  absl::Status complete = validate::ValidateVmConfig(spec, /*require_boot_source=*/true);
  if (!complete.ok()) return done(complete);
  StartPlan plan;
  *plan.request.mutable_boot()->mutable_config() = spec;
  plan.timeout = options_.call_timeout;
  RunStart(entry, std::move(plan), [this, id, done](absl::StatusOr<api::Vm> result) {
    done(result);
    if (ManagedVm* e = Find(id)) {
      std::vector<Done<api::Vm>> waiters = std::move(e->start_waiters);
      for (auto& waiter : waiters) waiter(result);
    }
  });
}

void VmManager::Forward(const std::string& vm_id, Op op, control::Request request,
                        std::function<void(absl::Status)> fail,
                        std::function<void(ManagedVm*, const control::Response&)> then) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return fail(valid);
  Post([this, vm_id, op, request, fail, then] {
    absl::StatusOr<ManagedVm*> found = FindIn(vm_id, op);
    if (!found.ok()) return fail(found.status());
    Call(*found, request, {}, [this, vm_id, fail, then](absl::StatusOr<control::Response> r) {
      absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
      ManagedVm* entry = Find(vm_id);
      if (s.ok() && entry == nullptr) s = VmNotFound(vm_id);
      if (!s.ok()) return fail(s);
      then(entry, *r);
    });
  });
}

void VmManager::SendCtrlAltDel(const std::string& vm_id, Done<bool> done) {
  control::Request request;
  request.mutable_send_ctrl_alt_del();
  Forward(vm_id, Op::kSendCtrlAltDel, request, done,
          [done](ManagedVm*, const control::Response&) { done(true); });
}

void VmManager::FlushMetrics(const std::string& vm_id, Done<std::string> done) {
  control::Request request;
  request.mutable_flush_metrics();
  Forward(vm_id, Op::kFlushMetrics, request, done,
          [this, done](ManagedVm* entry, const control::Response& response) {
            registry_.SetMetrics(entry->id(), response.metrics().json());
            done(response.metrics().json());
          });
}

void VmManager::SetVmState(const std::string& vm_id, const std::string& state, Done<api::Vm> done) {
  if (state != "Paused" && state != "Resumed") {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "vm_state.state: \"", absl::CHexEscape(state), "\" is not one of Paused, Resumed")));
  }
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  const bool pause = state == "Paused";
  Post([this, vm_id, pause, done] {
    ManagedVm* entry = Find(vm_id);
    if (entry == nullptr) return done(VmNotFound(vm_id));
    // Already there: nothing to do (as Firecracker).
    if (entry->state() == (pause ? api::VM_STATE_PAUSED : api::VM_STATE_RUNNING)) {
      return done(entry->record.vm());
    }
    control::Request request;
    if (pause) {
      request.mutable_pause();
    } else {
      request.mutable_resume();
    }
    Forward(vm_id, pause ? Op::kPause : Op::kResume, request, done,
            [this, pause, done](ManagedVm* e, const control::Response&) {
              absl::Status committed =
                  CommitState(e, pause ? api::VM_STATE_PAUSED : api::VM_STATE_RUNNING,
                              pause ? "paused by the API" : "");
              if (!committed.ok()) return done(committed);
              done(e->record.vm());
            });
  });
}

void VmManager::PatchDrive(const api::PartialDrive& patch, const std::string& vm_id,
                           Done<api::Drive> done) {
  Post([this, patch, vm_id, done] {
    absl::StatusOr<ManagedVm*> found = FindIn(vm_id, Op::kPatchDrive);
    if (!found.ok()) return done(found.status());
    ManagedVm* entry = *found;
    int index = -1;
    for (int i = 0; i < entry->vm()->spec().drives_size(); ++i) {
      if (entry->vm()->spec().drives(i).drive_id() == patch.drive_id()) index = i;
    }
    if (index < 0) {
      return done(absl::NotFoundError(absl::StrCat("drive \"", patch.drive_id(), "\" not found")));
    }
    if (patch.has_rate_limiter()) {
      absl::Status limiter =
          validate::ValidateRateLimiter(patch.rate_limiter(), "drive.rate_limiter");
      if (!limiter.ok()) return done(limiter);
    }
    control::Request request;
    request.mutable_patch_drive()->set_drive_id(patch.drive_id());
    if (patch.has_rate_limiter()) {
      *request.mutable_patch_drive()->mutable_rate_limiter() = patch.rate_limiter();
    }
    std::vector<UniqueFd> fds;
    if (patch.has_path_on_host()) {
      absl::StatusOr<UniqueFd> file =
          roots_.OpenFile("drive.path_on_host", patch.path_on_host(),
                          DriveOpenFlags(entry->vm()->spec().drives(index)));
      if (!file.ok()) return done(file.status());
      fds.push_back(std::move(*file));
    }
    Call(entry, request, std::move(fds),
         [this, vm_id, index, patch, done](absl::StatusOr<control::Response> r) {
           absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
           ManagedVm* e = Find(vm_id);
           if (!s.ok() || e == nullptr) return done(s.ok() ? VmNotFound(vm_id) : s);
           api::Drive* drive = e->vm()->mutable_spec()->mutable_drives(index);
           if (patch.has_path_on_host()) drive->set_path_on_host(patch.path_on_host());
           if (patch.has_rate_limiter()) *drive->mutable_rate_limiter() = patch.rate_limiter();
           absl::Status committed = Commit(e, api::WatchEvent::MODIFIED);
           if (!committed.ok()) return done(committed);
           done(*drive);
         });
  });
}

void VmManager::PatchNetworkInterface(const api::PartialNetworkInterface& patch,
                                      const std::string& vm_id, Done<api::NetworkInterface> done) {
  Post([this, patch, vm_id, done] {
    absl::StatusOr<ManagedVm*> found = FindIn(vm_id, Op::kPatchNetworkInterface);
    if (!found.ok()) return done(found.status());
    ManagedVm* entry = *found;
    int index = -1;
    for (int i = 0; i < entry->vm()->spec().network_interfaces_size(); ++i) {
      if (entry->vm()->spec().network_interfaces(i).iface_id() == patch.iface_id()) index = i;
    }
    if (index < 0) {
      return done(absl::NotFoundError(
          absl::StrCat("network interface \"", patch.iface_id(), "\" not found")));
    }
    for (const auto& [limiter, name] :
         {std::make_pair(&patch.rx_rate_limiter(), "rx_rate_limiter"),
          std::make_pair(&patch.tx_rate_limiter(), "tx_rate_limiter")}) {
      absl::Status s =
          validate::ValidateRateLimiter(*limiter, absl::StrCat("network_interface.", name));
      if (!s.ok()) return done(s);
    }
    control::Request request;
    control::PatchNetworkInterface* out = request.mutable_patch_network_interface();
    out->set_iface_id(patch.iface_id());
    if (patch.has_rx_rate_limiter()) *out->mutable_rx_rate_limiter() = patch.rx_rate_limiter();
    if (patch.has_tx_rate_limiter()) *out->mutable_tx_rate_limiter() = patch.tx_rate_limiter();
    Call(
        entry, request, {}, [this, vm_id, index, patch, done](absl::StatusOr<control::Response> r) {
          absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
          ManagedVm* e = Find(vm_id);
          if (!s.ok() || e == nullptr) return done(s.ok() ? VmNotFound(vm_id) : s);
          api::NetworkInterface* iface = e->vm()->mutable_spec()->mutable_network_interfaces(index);
          if (patch.has_rx_rate_limiter())
            *iface->mutable_rx_rate_limiter() = patch.rx_rate_limiter();
          if (patch.has_tx_rate_limiter())
            *iface->mutable_tx_rate_limiter() = patch.tx_rate_limiter();
          absl::Status committed = Commit(e, api::WatchEvent::MODIFIED);
          if (!committed.ok()) return done(committed);
          done(*iface);
        });
  });
}

void VmManager::PatchBalloon(const std::string& vm_id, uint32_t amount_mib,
                             Done<api::Balloon> done) {
  control::Request request;
  request.mutable_patch_balloon()->set_amount_mib(amount_mib);
  Forward(vm_id, Op::kPatchBalloon, request, done,
          [this, amount_mib, done](ManagedVm* entry, const control::Response&) {
            entry->vm()->mutable_spec()->mutable_balloon()->set_amount_mib(amount_mib);
            absl::Status committed = Commit(entry, api::WatchEvent::MODIFIED);
            if (!committed.ok()) return done(committed);
            done(entry->vm()->spec().balloon());
          });
}

void VmManager::PatchBalloonStatistics(const std::string& vm_id, uint32_t interval_s,
                                       Done<api::Balloon> done) {
  control::Request request;
  request.mutable_patch_balloon_statistics()->set_stats_polling_interval_s(interval_s);
  Forward(
      vm_id, Op::kPatchBalloonStatistics, request, done,
      [this, interval_s, done](ManagedVm* entry, const control::Response&) {
        entry->vm()->mutable_spec()->mutable_balloon()->set_stats_polling_interval_s(interval_s);
        absl::Status committed = Commit(entry, api::WatchEvent::MODIFIED);
        if (!committed.ok()) return done(committed);
        done(entry->vm()->spec().balloon());
      });
}

void VmManager::GetBalloonStatistics(const std::string& vm_id, Done<api::BalloonStatistics> done) {
  control::Request request;
  request.mutable_get_balloon_statistics();
  Forward(vm_id, Op::kGetBalloonStatistics, request, done,
          [done](ManagedVm*, const control::Response& response) {
            done(response.balloon_statistics());
          });
}

void VmManager::ConsoleInput(const std::string& vm_id, std::string data) {
  Post([this, vm_id, data] {
    ManagedVm* entry = Find(vm_id);
    if (entry == nullptr || !entry->process.has_value() || !entry->process->console.valid()) return;
    // Input beyond what the socket takes now is dropped: a client cannot
    // make the agent buffer without bound.
    if (::send(entry->process->console.get(), data.data(), data.size(),
               MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      VLOG(1) << "vm " << vm_id << ": console input dropped: " << std::strerror(errno);
    }
  });
}

}  // namespace hearth::agent
