#include "vmm/control/control_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/config/from_api.h"
#include "vmm/snapshot/format.h"
#include "vmm/snapshot/snapshot.h"

namespace hearth::vmm {
namespace {

// Resources by fd index (control.proto FdMap), taken from the message.
class FdOpener : public ResourceOpener {
 public:
  FdOpener(const v1::FdMap& map, std::vector<UniqueFd>* fds) : map_(map), fds_(fds) {}

  absl::StatusOr<UniqueFd> OpenKernel(const hearth::v1::BootSource&) override {
    return Take(map_.has_kernel() ? map_.kernel() : -1, "kernel");
  }
  absl::StatusOr<UniqueFd> OpenInitrd(const hearth::v1::BootSource&) override {
    return Take(map_.has_initrd() ? map_.initrd() : -1, "initrd");
  }
  absl::StatusOr<UniqueFd> OpenDrive(const hearth::v1::Drive& drive) override {
    auto it = map_.drives().find(drive.drive_id());
    return Take(it == map_.drives().end() ? -1 : it->second,
                absl::StrCat("drive ", drive.drive_id()));
  }
  absl::StatusOr<UniqueFd> OpenTap(const hearth::v1::NetworkInterface& iface) override {
    auto it = map_.taps().find(iface.iface_id());
    return Take(it == map_.taps().end() ? -1 : it->second,
                absl::StrCat("tap of ", iface.iface_id()));
  }
  absl::StatusOr<UniqueFd> OpenVsockListener(const hearth::v1::Vsock&) override {
    return Take(map_.has_vsock_listener() ? map_.vsock_listener() : -1, "vsock listener");
  }
  absl::StatusOr<UniqueFd> OpenMetrics(const hearth::v1::Metrics&) override {
    return Take(map_.has_metrics() ? map_.metrics() : -1, "metrics");
  }
  absl::StatusOr<UniqueFd> OpenLog(const hearth::v1::Logger&) override {
    return Take(map_.has_log() ? map_.log() : -1, "log");
  }

  absl::StatusOr<UniqueFd> Take(int32_t index, absl::string_view what) {
    if (index < 0 || static_cast<size_t>(index) >= fds_->size() ||
        !(*fds_)[static_cast<size_t>(index)].valid()) {
      return absl::InvalidArgumentError(
          absl::StrCat("boot: no fd for the ", what, " (index ", index, ")"));
    }
    return std::move((*fds_)[static_cast<size_t>(index)]);
  }

 private:
  const v1::FdMap& map_;
  std::vector<UniqueFd>* fds_;
};

// The guest's latest balloon report as the API message (tags from virtio
// 1.2 §5.5.6.3).
void FillBalloonStatistics(const virtio::BalloonStatistics& stats,
                           hearth::v1::BalloonStatistics* out) {
  out->set_target_pages(stats.target_pages);
  out->set_actual_pages(stats.actual_pages);
  out->set_target_mib(stats.target_pages / 256);
  out->set_actual_mib(stats.actual_pages / 256);
  auto set = [&](uint16_t tag, void (hearth::v1::BalloonStatistics::*setter)(uint64_t)) {
    auto it = stats.values.find(tag);
    if (it != stats.values.end()) (out->*setter)(it->second);
  };
  set(0, &hearth::v1::BalloonStatistics::set_swap_in);
  set(1, &hearth::v1::BalloonStatistics::set_swap_out);
  set(2, &hearth::v1::BalloonStatistics::set_major_faults);
  set(3, &hearth::v1::BalloonStatistics::set_minor_faults);
  set(4, &hearth::v1::BalloonStatistics::set_free_memory);
  set(5, &hearth::v1::BalloonStatistics::set_total_memory);
  set(6, &hearth::v1::BalloonStatistics::set_available_memory);
  set(7, &hearth::v1::BalloonStatistics::set_disk_caches);
  set(8, &hearth::v1::BalloonStatistics::set_hugetlb_allocations);
  set(9, &hearth::v1::BalloonStatistics::set_hugetlb_failures);
}

}  // namespace

// Guest-initiated vsock connections: the jailed VMM asks the agent.
class ControlServer::AgentVsockConnector : public virtio::VsockConnector {
 public:
  explicit AgentVsockConnector(ControlServer* server) : server_(server) {}
  void Connect(uint32_t port, std::function<void(absl::StatusOr<UniqueFd>)> done) override {
    if (server_->closed_) {
      done(absl::UnavailableError("no agent to connect vsock ports"));
      return;
    }
    uint64_t id = server_->next_vsock_request_++;
    server_->vsock_waiters_[id] = std::move(done);
    v1::Event event;
    event.mutable_vsock_connect_request()->set_request_id(id);
    event.mutable_vsock_connect_request()->set_port(port);
    server_->SendEvent(event);
  }

 private:
  ControlServer* server_;
};

ControlServer::ControlServer(MessageChannel channel, EventLoop* loop, const BootTimer* timer)
    : channel_(std::move(channel)), loop_(loop), timer_(timer) {
  // OnReadable drains the channel until it would block.
  int flags = ::fcntl(channel_.fd(), F_GETFL);
  if (flags < 0 || ::fcntl(channel_.fd(), F_SETFL, flags | O_NONBLOCK) < 0) {
    LOG(ERROR) << "control channel: cannot make it non-blocking";
  }
  absl::Status status = loop_->Add(channel_.fd(), [this](uint32_t) { OnReadable(); });
  if (!status.ok()) LOG(ERROR) << "control channel: " << status.message();
}

ControlServer::~ControlServer() {
  if (!closed_) loop_->Unwatch(channel_.fd());
}

std::unique_ptr<virtio::VsockConnector> ControlServer::MakeVsockConnector() {
  return std::make_unique<AgentVsockConnector>(this);
}

void ControlServer::SendEvent(const v1::Event& event) {
  if (closed_) return;
  absl::Status status = channel_.Send(v1::KIND_EVENT, event.SerializeAsString());
  if (!status.ok()) LOG(WARNING) << "control channel: " << status.message();
}

void ControlServer::Reply(uint64_t id, const absl::Status& status, v1::Response response) {
  if (closed_) return;
  response.set_id(id);
  response.set_code(static_cast<int32_t>(status.code()));
  response.set_message(std::string(status.message()));
  absl::Status sent = channel_.Send(v1::KIND_RESPONSE, response.SerializeAsString());
  if (!sent.ok()) LOG(WARNING) << "control channel: " << sent.message();
}

void ControlServer::SendReady() {
  v1::Event ready;
  ready.mutable_ready()->set_protocol_version(kControlProtocolVersion);
  ready.mutable_ready()->set_vmm_version(kVmmVersion);
  ready.mutable_ready()->set_pid(::getpid());
  ready.mutable_ready()->set_state(MakeInfo().state());
  SendEvent(ready);
}

void ControlServer::SetReattachListener(UniqueFd listener, uid_t agent_uid) {
  reattach_listener_ = std::move(listener);
  agent_uid_ = agent_uid;
  // AcceptReattach runs on the event loop: a blocking accept would stall
  // the VM's devices, so a listener that cannot be made non-blocking is
  // not watched (the agent cannot reattach, the VM runs on).
  int flags = ::fcntl(reattach_listener_.get(), F_GETFL);
  if (flags < 0 || ::fcntl(reattach_listener_.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    LOG(ERROR) << "reattach socket: fcntl O_NONBLOCK: " << std::strerror(errno);
    return;
  }
  absl::Status status =
      loop_->Add(reattach_listener_.get(), [this](uint32_t) { AcceptReattach(); });
  if (!status.ok()) LOG(ERROR) << "reattach socket: " << status.message();
}

void ControlServer::SetConsole(std::shared_ptr<SocketConsoleOutput> output) {
  console_output_ = std::move(output);
}

void ControlServer::CloseChannel() {
  if (closed_) return;
  loop_->Unwatch(channel_.fd());
  channel_ = MessageChannel();
  closed_ = true;
  for (auto& [id, done] : vsock_waiters_) done(absl::UnavailableError("agent gone"));
  vsock_waiters_.clear();
}

void ControlServer::AcceptReattach() {
  while (true) {
    int fd = ::accept4(reattach_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    UniqueFd socket(fd);
    struct ucred peer = {};
    socklen_t length = sizeof(peer);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0 || peer.uid != agent_uid_) {
      LOG(WARNING) << "reattach: refused a peer with uid " << peer.uid;
      continue;
    }
    // The new agent takes over; an old channel (if still open) is dropped.
    CloseChannel();
    channel_ = MessageChannel(std::move(socket));
    closed_ = false;
    if (!loop_->Add(channel_.fd(), [this](uint32_t) { OnReadable(); }).ok()) {
      CloseChannel();
      continue;
    }
    LOG(WARNING) << "an agent re-attached";
    SendReady();
  }
}

absl::StatusOr<StartPlan> ControlServer::RunUntilBoot() {
  SendReady();
  while (!plan_.has_value()) {
    // Without a reattach socket nobody can send Boot any more. With one, a
    // VM still being configured waits for its restarted agent, as a
    // running one does.
    if (closed_ && !reattach_listener_.valid()) {
      return absl::UnavailableError("the agent closed the control channel before Boot");
    }
    RETURN_IF_ERROR(loop_->RunOnce(-1));
  }
  StartPlan plan = std::move(*plan_);
  plan_.reset();
  return plan;
}

void ControlServer::Attach(Vmm* vmm) {
  vmm_ = vmm;
  boot_us_ = timer_->ElapsedUs();
  if (pending_boot_.has_value()) {
    v1::Response response;
    *response.mutable_info() = MakeInfo();
    Reply(*pending_boot_, absl::OkStatus(), response);
    pending_boot_.reset();
  }
  v1::Event event;
  event.mutable_state_changed()->set_state(vmm->paused() ? v1::VM_STATE_PAUSED
                                                         : v1::VM_STATE_RUNNING);
  SendEvent(event);
}

void ControlServer::FailBoot(const absl::Status& status) {
  if (pending_boot_.has_value()) Reply(*pending_boot_, status);
  pending_boot_.reset();
}

void ControlServer::SendGuestExit(const VmOutcome& outcome) {
  v1::Event event;
  v1::GuestExit* exit = event.mutable_guest_exit();
  switch (outcome.kind) {
    case VmOutcome::Kind::kReset:
      exit->set_kind(v1::GuestExit::KIND_RESET);
      break;
    case VmOutcome::Kind::kPowerOff:
      exit->set_kind(v1::GuestExit::KIND_POWER_OFF);
      break;
    case VmOutcome::Kind::kTripleFault:
      exit->set_kind(v1::GuestExit::KIND_TRIPLE_FAULT);
      break;
    case VmOutcome::Kind::kError:
      exit->set_kind(v1::GuestExit::KIND_ERROR);
      break;
    case VmOutcome::Kind::kStopped:
      exit->set_kind(v1::GuestExit::KIND_STOPPED);
      break;
  }
  exit->set_reason(outcome.reason);
  SendEvent(event);
}

v1::Info ControlServer::MakeInfo() const {
  v1::Info info;
  info.set_state(vmm_ == nullptr  ? v1::VM_STATE_WAITING
                 : vmm_->paused() ? v1::VM_STATE_PAUSED
                                  : v1::VM_STATE_RUNNING);
  info.set_protocol_version(kControlProtocolVersion);
  info.set_vmm_version(kVmmVersion);
  info.set_pid(::getpid());
  info.set_boot_us(boot_us_);
  info.set_first_output_us(timer_->first_output_us());
  return info;
}

void ControlServer::OnReadable() {
  // Drain everything queued; each datagram is one message.
  while (true) {
    absl::StatusOr<std::optional<MessageChannel::Message>> message = channel_.Receive();
    if (!message.ok()) {
      if (message.status().code() == absl::StatusCode::kUnavailable) return;  // drained
      // A malformed datagram: there is no id to answer, so say so in an
      // error response with id 0.
      Reply(0, message.status());
      continue;
    }
    if (!message->has_value()) {
      // The agent went away. The guest keeps running; a restarted agent
      // re-attaches on the VMM's reattach socket.
      LOG(WARNING) << "control channel closed by the agent";
      CloseChannel();
      return;
    }
    if ((*message)->kind != v1::KIND_REQUEST) {
      Reply(0, absl::InvalidArgumentError(absl::StrCat("unexpected message kind ", (*message)->kind,
                                                       "; the VMM takes requests")));
      continue;
    }
    v1::Request request;
    if (!request.ParseFromString((*message)->payload)) {
      Reply(0, absl::InvalidArgumentError("request does not parse as hearth.vmm.v1.Request"));
      continue;
    }
    Handle(request, std::move((*message)->fds));
  }
}

void ControlServer::Handle(const v1::Request& request, std::vector<UniqueFd> fds) {
  const uint64_t id = request.id();
  v1::Response response;
  absl::Status status;
  switch (request.op_case()) {
    case v1::Request::kBoot:
    case v1::Request::kLoadSnapshot:
    case v1::Request::kGetInfo:
    case v1::Request::kVsockConnected:
    case v1::Request::OP_NOT_SET:
      break;
    default:  // the rest act on the running VM
      if (vmm_ == nullptr) {
        Reply(id, absl::FailedPreconditionError("the VM has not booted yet"));
        return;
      }
  }
  auto balloon = [&]() -> absl::StatusOr<virtio::Balloon*> {
    if (vmm_->parts().balloon == nullptr) {
      return absl::FailedPreconditionError("the VM has no balloon device");
    }
    return vmm_->parts().balloon.get();
  };
  switch (request.op_case()) {
    case v1::Request::kBoot:
    case v1::Request::kLoadSnapshot:
      if (vmm_ != nullptr || pending_boot_.has_value() || plan_.has_value()) {
        status = absl::FailedPreconditionError("the VM is already booted");
        break;
      }
      status = request.has_boot() ? HandleBoot(request.boot(), std::move(fds))
                                  : HandleLoadSnapshot(request.load_snapshot(), std::move(fds));
      if (status.ok()) {
        pending_boot_ = id;  // answered by Attach or FailBoot
        return;
      }
      break;
    case v1::Request::kPause:
      status = vmm_->Pause();
      break;
    case v1::Request::kResume:
      status = vmm_->Resume();
      break;
    case v1::Request::kSendCtrlAltDel:
      status = vmm_->SendCtrlAltDel();
      break;
    case v1::Request::kFlushMetrics: {
      absl::StatusOr<std::string> json = vmm_->FlushMetrics();
      status = json.status();
      if (json.ok()) response.mutable_metrics()->set_json(*json);
      break;
    }
    case v1::Request::kGetInfo:
      *response.mutable_info() = MakeInfo();
      break;
    case v1::Request::kPatchDrive:
      status = HandlePatchDrive(request.patch_drive(), std::move(fds));
      break;
    case v1::Request::kPatchNetworkInterface:
      status = HandlePatchNet(request.patch_network_interface());
      break;
    case v1::Request::kPatchBalloon: {
      absl::StatusOr<virtio::Balloon*> device = balloon();
      status = device.status();
      if (device.ok()) (*device)->SetTarget(request.patch_balloon().amount_mib());
      break;
    }
    case v1::Request::kPatchBalloonStatistics: {
      absl::StatusOr<virtio::Balloon*> device = balloon();
      status = device.ok() ? (*device)->SetStatsInterval(
                                 request.patch_balloon_statistics().stats_polling_interval_s())
                           : device.status();
      break;
    }
    case v1::Request::kGetBalloonStatistics: {
      absl::StatusOr<virtio::Balloon*> device = balloon();
      status = device.status();
      if (device.ok()) {
        FillBalloonStatistics((*device)->statistics(), response.mutable_balloon_statistics());
      }
      break;
    }
    case v1::Request::kVsockConnected: {
      auto it = vsock_waiters_.find(request.vsock_connected().request_id());
      if (it == vsock_waiters_.end()) {
        status = absl::NotFoundError("no vsock connection is waiting for that request_id");
        break;
      }
      auto done = std::move(it->second);
      vsock_waiters_.erase(it);
      if (!request.vsock_connected().error().empty() || fds.empty()) {
        done(absl::UnavailableError(request.vsock_connected().error().empty()
                                        ? "the agent sent no socket"
                                        : request.vsock_connected().error()));
      } else {
        done(std::move(fds[0]));
      }
      break;
    }
    case v1::Request::kShutdown:
      vmm_->Stop(VmOutcome{VmOutcome::Kind::kStopped, "shut down by the agent"});
      break;
    case v1::Request::kAttachConsole:
      if (fds.empty() || console_output_ == nullptr) {
        status = absl::InvalidArgumentError("AttachConsole carries no console socket");
        break;
      }
      {
        int old_fd = console_output_->fd();
        int new_fd = fds[0].get();
        UniqueFd old = console_output_->Replace(std::move(fds[0]));
        status = vmm_->ReplaceConsoleInput(old_fd, new_fd);
      }
      break;
    case v1::Request::kCreateSnapshot:
      status = HandleCreateSnapshot(request.create_snapshot(), std::move(fds), &response);
      break;
    case v1::Request::OP_NOT_SET:
      status = absl::InvalidArgumentError("request has no operation (unknown to this VMM?)");
      break;
  }
  Reply(id, status, std::move(response));
}

absl::Status ControlServer::HandleBoot(const v1::Boot& boot, std::vector<UniqueFd> fds) {
  FdOpener opener(boot.fds(), &fds);
  if (boot.fds().has_console()) {
    absl::StatusOr<UniqueFd> console = opener.Take(boot.fds().console(), "console");
    if (!console.ok()) return console.status();
    console_ = std::move(*console);
  }
  absl::StatusOr<VmmConfig> config = VmmConfigFromApi(boot.config(), &opener);
  if (!config.ok()) return config.status();
  StartPlan plan;
  plan.config = std::move(*config);
  plan_ = std::move(plan);
  return absl::OkStatus();
}

absl::Status ControlServer::HandleLoadSnapshot(const v1::LoadSnapshot& load,
                                               std::vector<UniqueFd> fds) {
  FdOpener opener(load.fds(), &fds);
  if (load.fds().has_console()) {
    ASSIGN_OR_RETURN(console_, opener.Take(load.fds().console(), "console"));
  }
  ASSIGN_OR_RETURN(UniqueFd state_file,
                   opener.Take(load.fds().has_snapshot_state() ? load.fds().snapshot_state() : -1,
                               "snapshot state"));
  ASSIGN_OR_RETURN(UniqueFd memory_file,
                   opener.Take(load.fds().has_snapshot_memory() ? load.fds().snapshot_memory() : -1,
                               "snapshot memory"));
  ASSIGN_OR_RETURN(hearth::vmm::v1::VmSnapshot snapshot, snapshot::ReadStateFile(state_file.get()));
  ASSIGN_OR_RETURN(VmmConfig config,
                   VmmConfigFromApi(snapshot.config(), &opener, ConfigPurpose::kRestore));
  // Refuse mismatched files now, while the VMM can still take another
  // LoadSnapshot, rather than when half the VM is built.
  RETURN_IF_ERROR(snapshot::CheckRestoreFiles(snapshot, memory_file.get(), config));
  StartPlan plan;
  plan.config = std::move(config);
  plan.snapshot = std::move(snapshot);
  plan.snapshot_memory = std::move(memory_file);
  plan.resume = load.resume_vm();
  plan.track_dirty_pages = load.track_dirty_pages();
  plan_ = std::move(plan);
  return absl::OkStatus();
}

absl::Status ControlServer::HandleCreateSnapshot(const v1::CreateSnapshot& create,
                                                 std::vector<UniqueFd> fds,
                                                 v1::Response* response) {
  hearth::vmm::v1::VmSnapshot::MemoryKind kind;
  if (create.snapshot_type().empty() || create.snapshot_type() == "Full") {
    kind = hearth::vmm::v1::VmSnapshot::FULL;
  } else if (create.snapshot_type() == "Diff") {
    kind = hearth::vmm::v1::VmSnapshot::DIFF;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot_type: \"", create.snapshot_type(), "\" is not one of Full, Diff"));
  }
  if (fds.size() != 2) {
    return absl::InvalidArgumentError("CreateSnapshot carries the state and memory files");
  }
  // The vCPUs are parked, but a device reset or activation one of them
  // posted may not have run yet: finish it, so the saved queues are the
  // guest's current ones.
  loop_->RunPosted();
  ASSIGN_OR_RETURN(snapshot::CreateStats stats,
                   snapshot::CreateSnapshot(vmm_, kind, fds[0].get(), fds[1].get()));
  v1::SnapshotCreated* created = response->mutable_snapshot_created();
  created->set_state_bytes(stats.state_bytes);
  created->set_memory_bytes(stats.memory.bytes_written);
  created->set_pages_written(stats.memory.pages_written);
  return absl::OkStatus();
}

absl::Status ControlServer::HandlePatchDrive(const v1::PatchDrive& patch,
                                             std::vector<UniqueFd> fds) {
  for (const auto& block : vmm_->parts().blocks) {
    if (block->drive_id() != patch.drive_id()) continue;
    if (!fds.empty()) RETURN_IF_ERROR(block->UpdateBacking(std::move(fds[0])));
    if (patch.has_rate_limiter()) {
      block->UpdateRateLimiter(RateLimiterFromApi(patch.rate_limiter()));
    }
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no drive \"", patch.drive_id(), "\""));
}

absl::Status ControlServer::HandlePatchNet(const v1::PatchNetworkInterface& patch) {
  for (const auto& net : vmm_->parts().nets) {
    if (net->iface_id() != patch.iface_id()) continue;
    std::optional<RateLimiterConfig> rx, tx;
    if (patch.has_rx_rate_limiter()) rx = RateLimiterFromApi(patch.rx_rate_limiter());
    if (patch.has_tx_rate_limiter()) tx = RateLimiterFromApi(patch.tx_rate_limiter());
    net->UpdateRateLimiters(rx, tx);
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no network interface \"", patch.iface_id(), "\""));
}

UniqueFd SocketConsoleOutput::Replace(UniqueFd fd) {
  absl::MutexLock lock(&mutex_);
  std::swap(fd_, fd);
  return fd;
}

int SocketConsoleOutput::fd() const {
  absl::MutexLock lock(&mutex_);
  return fd_.get();
}

void SocketConsoleOutput::Write(absl::Span<const uint8_t> bytes) {
  if (!seen_output_.exchange(true) && on_first_output_) on_first_output_();
  absl::MutexLock lock(&mutex_);
  ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < static_cast<ssize_t>(bytes.size())) {
    dropped_.fetch_add(bytes.size() - static_cast<size_t>(std::max<ssize_t>(n, 0)));
  }
}

}  // namespace hearth::vmm
