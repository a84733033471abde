#include "vmm/vmm.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace hearth::vmm {
namespace {

VmOutcome::Kind OutcomeKind(vcpu::VcpuExit::Kind kind) {
  switch (kind) {
    case vcpu::VcpuExit::Kind::kReset:
      return VmOutcome::Kind::kReset;
    case vcpu::VcpuExit::Kind::kPowerOff:
      return VmOutcome::Kind::kPowerOff;
    case vcpu::VcpuExit::Kind::kTripleFault:
      return VmOutcome::Kind::kTripleFault;
    case vcpu::VcpuExit::Kind::kError:
      return VmOutcome::Kind::kError;
  }
  return VmOutcome::Kind::kError;
}

// Retry period for console input while the guest's receive FIFO is full.
constexpr absl::Duration kConsoleRetry = absl::Milliseconds(20);

}  // namespace

const char* OutcomeName(VmOutcome::Kind kind) {
  switch (kind) {
    case VmOutcome::Kind::kReset:
      return "reset";
    case VmOutcome::Kind::kPowerOff:
      return "power-off";
    case VmOutcome::Kind::kTripleFault:
      return "triple-fault";
    case VmOutcome::Kind::kError:
      return "error";
    case VmOutcome::Kind::kStopped:
      return "stopped";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Vmm>> Vmm::Create(Parts parts) {
  ASSIGN_OR_RETURN(EventFd exits_event, EventFd::Create());
  std::unique_ptr<Vmm> vmm(new Vmm(std::move(parts), std::move(exits_event)));
  RETURN_IF_ERROR(vmm->event_loop()->Add(vmm->exits_event_.fd(), [vmm = vmm.get()](uint32_t) {
    // Drained for its readiness only: DrainExits takes whatever is queued.
    (void)vmm->exits_event_.Read();
    vmm->DrainExits();
  }));
  RETURN_IF_ERROR(
      vmm->event_loop()->Add(vmm->parts_.reset_event->fd(), [vmm = vmm.get()](uint32_t) {
        // Drained for its readiness only: one reset or several, the VM ends.
        (void)vmm->parts_.reset_event->Read();
        vmm->Finish(VmOutcome{VmOutcome::Kind::kReset, "guest reset (i8042 reset line)"});
      }));
  return vmm;
}

Vmm::Vmm(Parts parts, EventFd exits_event)
    : parts_(std::move(parts)), exits_event_(std::move(exits_event)) {
  for (kvm::Vcpu& vcpu : parts_.vcpus) {
    runners_.push_back(std::make_unique<vcpu::VcpuRunner>(
        std::move(vcpu), parts_.pio_bus.get(), parts_.mmio_bus.get(),
        [this](const vcpu::VcpuExit& exit) {
          Stop(VmOutcome{OutcomeKind(exit.kind), exit.reason});
        }));
  }
  parts_.vcpus.clear();
}

Vmm::~Vmm() {
  for (auto& runner : runners_) runner->RequestStop();
  runners_.clear();  // joins
}

absl::Status Vmm::AttachConsoleInput(int fd) {
  console_input_fd_ = fd;
  ASSIGN_OR_RETURN(TimerFd retry, TimerFd::Create());
  console_retry_ = std::move(retry);
  RETURN_IF_ERROR(event_loop()->Add(console_retry_->fd(), [this](uint32_t) {
    // Drained for its readiness only: the expiration count does not matter.
    (void)console_retry_->Read();
    PumpConsoleInput();
  }));
  return event_loop()->Add(fd, [this](uint32_t) { PumpConsoleInput(); });
}

absl::Status Vmm::ReplaceConsoleInput(int old_fd, int new_fd) {
  if (old_fd >= 0) event_loop()->Unwatch(old_fd);
  console_input_fd_ = new_fd;
  if (!console_retry_.has_value()) return AttachConsoleInput(new_fd);
  return event_loop()->Add(new_fd, [this](uint32_t) { PumpConsoleInput(); });
}

void Vmm::PumpConsoleInput() {
  size_t space = parts_.serial->InputSpace();
  if (space == 0) {
    // Stop watching until the guest drains its FIFO, so a level-triggered
    // fd does not spin the loop; poll again shortly.
    event_loop()->Unwatch(console_input_fd_);
    absl::Status armed = console_retry_->Arm(kConsoleRetry);
    if (!armed.ok()) LOG(WARNING) << "console input stops: retry timer: " << armed.message();
    return;
  }
  if (!event_loop()->Watching(console_input_fd_)) {
    absl::Status watched =
        event_loop()->Add(console_input_fd_, [this](uint32_t) { PumpConsoleInput(); });
    if (!watched.ok()) LOG(WARNING) << "console input stops: " << watched.message();
    return;  // the fd's readiness brings us back
  }
  uint8_t buffer[devices::Serial::kFifoSize];
  ssize_t n = ::read(console_input_fd_, buffer, space);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    event_loop()->Unwatch(console_input_fd_);  // EOF or error: done
    return;
  }
  parts_.serial->EnqueueInput(absl::MakeConstSpan(buffer, static_cast<size_t>(n)));
}

absl::Status Vmm::Start(std::function<absl::Status()> on_vcpu_thread_start, bool paused) {
  if (started_) return absl::FailedPreconditionError("VM already started");
  RETURN_IF_ERROR(vcpu::VcpuRunner::InstallKickSignal());
  for (auto& runner : runners_) {
    // Requested before the thread exists, a pause parks it before KVM_RUN.
    if (paused) runner->Pause();
    RETURN_IF_ERROR(runner->Start(on_vcpu_thread_start));
  }
  paused_ = paused;
  started_ = true;
  return absl::OkStatus();
}

void Vmm::Stop(VmOutcome outcome) {
  {
    absl::MutexLock lock(&exits_mutex_);
    exits_.push_back(std::move(outcome));
  }
  // Cannot fail: the counter would have to reach 2^64 - 2 without a read.
  (void)exits_event_.Write(1);
}

void Vmm::DrainExits() {
  std::deque<VmOutcome> exits;
  {
    absl::MutexLock lock(&exits_mutex_);
    exits.swap(exits_);
  }
  for (VmOutcome& outcome : exits) Finish(std::move(outcome));
}

void Vmm::Finish(VmOutcome outcome) {
  // The first reason wins: a reset makes every other vCPU stop too, and
  // their "stopped" exits must not hide why.
  if (!outcome_.has_value()) {
    LOG(INFO) << "VM ending: " << OutcomeName(outcome.kind) << ": " << outcome.reason;
    outcome_ = std::move(outcome);
  }
  for (auto& runner : runners_) runner->RequestStop();
  event_loop()->Stop();
}

absl::Status Vmm::Pause() {
  if (!started_ || outcome_.has_value()) {
    return absl::FailedPreconditionError("the VM is not running");
  }
  if (paused_) return absl::FailedPreconditionError("the VM is already paused");
  for (auto& runner : runners_) runner->Pause();
  paused_ = true;
  return absl::OkStatus();
}

absl::Status Vmm::Resume() {
  if (!paused_) return absl::FailedPreconditionError("the VM is not paused");
  for (auto& runner : runners_) runner->Resume();
  paused_ = false;
  return absl::OkStatus();
}

absl::Status Vmm::SendCtrlAltDel() { return parts_.i8042->TriggerCtrlAltDel(); }

namespace {

// Appends `"name": {"counter": n, ...}` for one device's counters. Names
// are device kinds and client ids ([A-Za-z0-9_-]), so nothing needs escaping.
void AppendDevice(std::string* json, const std::string& name,
                  const std::vector<std::pair<std::string, uint64_t>>& counters) {
  absl::StrAppend(json, json->size() > 1 ? ", " : "", "\"", name, "\": {");
  for (size_t i = 0; i < counters.size(); ++i) {
    absl::StrAppend(json, i ? ", " : "", "\"", counters[i].first, "\": ", counters[i].second);
  }
  json->push_back('}');
}

std::vector<std::pair<std::string, uint64_t>> TransportCounters(
    const virtio::MmioTransport& transport) {
  const virtio::TransportMetrics& m = transport.metrics();
  return {{"bad_register_accesses", m.bad_register_accesses.load()},
          {"notifications_before_ready", m.notifications_before_ready.load()},
          {"rejected_features", m.rejected_features.load()},
          {"activation_failures", m.activation_failures.load()},
          {"interrupt_failures", transport.interrupt_failures()},
          {"status", transport.status()}};
}

}  // namespace

std::string Vmm::MetricsJson() const {
  std::string json = "{";
  uint64_t exits = 0;
  for (const auto& runner : runners_) exits += runner->exits();
  AppendDevice(&json, "vcpu", {{"exits", exits}});
  AppendDevice(&json, "serial", {{"bytes_written", parts_.serial->bytes_written()}});
  AppendDevice(&json, "i8042", {{"resets_requested", parts_.i8042->resets_requested()}});
  for (const auto& block : parts_.blocks) {
    AppendDevice(&json, "block_" + block->drive_id(), block->metrics().Snapshot());
  }
  for (const auto& net : parts_.nets) {
    AppendDevice(&json, "net_" + net->iface_id(), net->metrics().Snapshot());
  }
  if (parts_.rng) AppendDevice(&json, "rng", parts_.rng->metrics().Snapshot());
  if (parts_.balloon) AppendDevice(&json, "balloon", parts_.balloon->metrics().Snapshot());
  if (parts_.vsock) AppendDevice(&json, "vsock", parts_.vsock->metrics().Snapshot());
  for (size_t i = 0; i < parts_.virtio.size(); ++i) {
    AppendDevice(
        &json,
        absl::StrCat("transport_", absl::StrReplaceAll(parts_.virtio[i].transport->device()->name(),
                                                       {{" ", "_"}})),
        TransportCounters(*parts_.virtio[i].transport));
  }
  json.push_back('}');
  return json;
}

absl::StatusOr<std::string> Vmm::FlushMetrics() const {
  std::string json = MetricsJson();
  if (!parts_.metrics_file.valid()) return json;
  std::string line = json + "\n";
  if (::write(parts_.metrics_file.get(), line.data(), line.size()) !=
      static_cast<ssize_t>(line.size())) {
    return ErrnoStatus("writing metrics");
  }
  return json;
}

absl::StatusOr<VmOutcome> Vmm::Run() {
  if (!started_) return absl::FailedPreconditionError("VM not started");
  absl::Status status = event_loop()->Run();
  for (auto& runner : runners_) runner->RequestStop();
  for (auto& runner : runners_) runner->Join();
  DrainExits();  // exits raced with the loop's end
  RETURN_IF_ERROR(status);
  return outcome_.value_or(VmOutcome{VmOutcome::Kind::kStopped, "stopped"});
}

}  // namespace hearth::vmm
