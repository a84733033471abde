#include "vmm/vmm.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace hearth::vmm {
namespace {

VmOutcome::Kind OutcomeKind(vcpu::VcpuExit::Kind kind) {
  switch (kind) {
    case vcpu::VcpuExit::Kind::kReset: return VmOutcome::Kind::kReset;
    case vcpu::VcpuExit::Kind::kPowerOff: return VmOutcome::Kind::kPowerOff;
    case vcpu::VcpuExit::Kind::kTripleFault: return VmOutcome::Kind::kTripleFault;
    case vcpu::VcpuExit::Kind::kError: return VmOutcome::Kind::kError;
  }
  return VmOutcome::Kind::kError;
}

// Retry period for console input while the guest's receive FIFO is full.
constexpr absl::Duration kConsoleRetry = absl::Milliseconds(20);

}  // namespace

const char* OutcomeName(VmOutcome::Kind kind) {
  switch (kind) {
    case VmOutcome::Kind::kReset: return "reset";
    case VmOutcome::Kind::kPowerOff: return "power-off";
    case VmOutcome::Kind::kTripleFault: return "triple-fault";
    case VmOutcome::Kind::kError: return "error";
    case VmOutcome::Kind::kStopped: return "stopped";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Vmm>> Vmm::Create(Parts parts) {
  ASSIGN_OR_RETURN(EventFd exits_event, EventFd::Create());
  std::unique_ptr<Vmm> vmm(new Vmm(std::move(parts), std::move(exits_event)));
  RETURN_IF_ERROR(vmm->event_loop()->Add(vmm->exits_event_.fd(),
                                         [vmm = vmm.get()](uint32_t) {
                                           (void)vmm->exits_event_.Read();
                                           vmm->DrainExits();
                                         }));
  RETURN_IF_ERROR(vmm->event_loop()->Add(
      vmm->parts_.reset_event->fd(), [vmm = vmm.get()](uint32_t) {
        (void)vmm->parts_.reset_event->Read();
        vmm->Finish(VmOutcome{VmOutcome::Kind::kReset,
                              "guest reset (i8042 reset line)"});
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
    (void)console_retry_->Read();
    PumpConsoleInput();
  }));
  return event_loop()->Add(fd, [this](uint32_t) { PumpConsoleInput(); });
}

void Vmm::PumpConsoleInput() {
  size_t space = parts_.serial->InputSpace();
  if (space == 0) {
    // Stop watching until the guest drains its FIFO, so a level-triggered
    // fd does not spin the loop; poll again shortly.
    if (event_loop()->Watching(console_input_fd_)) {
      (void)event_loop()->Remove(console_input_fd_);
    }
    (void)console_retry_->Arm(kConsoleRetry);
    return;
  }
  if (!event_loop()->Watching(console_input_fd_)) {
    (void)event_loop()->Add(console_input_fd_,
                            [this](uint32_t) { PumpConsoleInput(); });
    return;  // the fd's readiness brings us back
  }
  uint8_t buffer[devices::Serial::kFifoSize];
  ssize_t n = ::read(console_input_fd_, buffer, space);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    (void)event_loop()->Remove(console_input_fd_);  // EOF or error: done
    return;
  }
  parts_.serial->EnqueueInput(absl::MakeConstSpan(buffer, static_cast<size_t>(n)));
}

absl::Status Vmm::Start(std::function<absl::Status()> on_vcpu_thread_start) {
  if (started_) return absl::FailedPreconditionError("VM already started");
  RETURN_IF_ERROR(vcpu::VcpuRunner::InstallKickSignal());
  for (auto& runner : runners_) {
    RETURN_IF_ERROR(runner->Start(on_vcpu_thread_start));
  }
  started_ = true;
  return absl::OkStatus();
}

void Vmm::Stop(VmOutcome outcome) {
  {
    absl::MutexLock lock(&exits_mutex_);
    exits_.push_back(std::move(outcome));
  }
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
    LOG(INFO) << "VM ending: " << OutcomeName(outcome.kind) << ": "
              << outcome.reason;
    outcome_ = std::move(outcome);
  }
  for (auto& runner : runners_) runner->RequestStop();
  event_loop()->Stop();
}

absl::Status Vmm::SendCtrlAltDel() { return parts_.i8042->TriggerCtrlAltDel(); }

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
