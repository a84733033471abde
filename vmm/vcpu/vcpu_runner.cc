#include "vmm/vcpu/vcpu_runner.h"

#include <signal.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth::vcpu {
namespace {

const char* ExitName(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN:
      return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION:
      return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_IO:
      return "KVM_EXIT_IO";
    case KVM_EXIT_HYPERCALL:
      return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG:
      return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT:
      return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO:
      return "KVM_EXIT_MMIO";
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return "KVM_EXIT_IRQ_WINDOW_OPEN";
    case KVM_EXIT_SHUTDOWN:
      return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY:
      return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTR:
      return "KVM_EXIT_INTR";
    case KVM_EXIT_INTERNAL_ERROR:
      return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT:
      return "KVM_EXIT_SYSTEM_EVENT";
    default:
      return "KVM exit";
  }
}

const char* InternalErrorName(uint32_t suberror) {
  switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION:
      return "emulation failure";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
      return "exception while delivering another";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
      return "event delivery failure";
    default:
      return "internal error";
  }
}

void KickHandler(int) {}

}  // namespace

int VcpuRunner::KickSignal() { return SIGRTMIN; }

absl::Status VcpuRunner::InstallKickSignal() {
  struct sigaction action = {};
  action.sa_handler = KickHandler;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  if (::sigaction(KickSignal(), &action, nullptr) < 0) {
    return ErrnoStatus("sigaction(vCPU kick signal)");
  }
  return absl::OkStatus();
}

VcpuRunner::VcpuRunner(kvm::Vcpu vcpu, const bus::Bus* pio_bus, const bus::Bus* mmio_bus,
                       ExitCallback on_exit)
    : vcpu_(std::move(vcpu)),
      pio_bus_(pio_bus),
      mmio_bus_(mmio_bus),
      on_exit_(std::move(on_exit)) {}

VcpuRunner::~VcpuRunner() {
  RequestStop();
  Join();
}

absl::Status VcpuRunner::Start(std::function<absl::Status()> on_thread_start) {
  if (thread_.joinable()) {
    return absl::FailedPreconditionError(absl::StrCat("vCPU ", vcpu_.id(), " already started"));
  }
  thread_ = std::thread(&VcpuRunner::ThreadMain, this, std::move(on_thread_start));
  return absl::OkStatus();
}

void VcpuRunner::Kick() {
  // Order matters: immediate_exit first, so a thread about to enter KVM_RUN
  // returns at once even if the signal arrives before the ioctl.
  vcpu_.run()->immediate_exit = 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (thread_started_.load() && !finished_.load()) {
    ::pthread_kill(native_handle_.load(), KickSignal());
  }
}

void VcpuRunner::RequestStop() {
  stop_requested_ = true;
  {
    absl::MutexLock lock(&mutex_);
    pause_requested_ = false;  // wakes a parked thread so it can stop
  }
  Kick();
}

void VcpuRunner::Join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuRunner::Pause() {
  absl::MutexLock lock(&mutex_);
  pause_requested_ = true;
  Kick();
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return parked_ || finished_.load() || !thread_started_.load();
  };
  mutex_.Await(absl::Condition(&settled));
}

void VcpuRunner::Resume() {
  absl::MutexLock lock(&mutex_);
  pause_requested_ = false;
}

bool VcpuRunner::WaitWhilePaused() {
  absl::MutexLock lock(&mutex_);
  if (!pause_requested_) return !stop_requested_;
  parked_ = true;
  auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return !pause_requested_ || stop_requested_.load();
  };
  mutex_.Await(absl::Condition(&released));
  parked_ = false;
  return !stop_requested_;
}

void VcpuRunner::ThreadMain(std::function<absl::Status()> on_thread_start) {
  native_handle_ = ::pthread_self();
  thread_started_ = true;
  if (on_thread_start) {
    absl::Status status = on_thread_start();
    if (!status.ok()) {
      Finish(VcpuExit::Kind::kError, absl::StrCat("vCPU thread setup failed: ", status.message()));
      return;
    }
  }
  while (true) {
    // Clear before looking at the requests (see Kick()).
    vcpu_.run()->immediate_exit = 0;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (stop_requested_ || !WaitWhilePaused()) break;
    absl::StatusOr<uint32_t> reason = vcpu_.Run();
    if (!reason.ok()) {
      Finish(VcpuExit::Kind::kError, std::string(reason.status().message()));
      return;
    }
    exits_.fetch_add(1, std::memory_order_relaxed);
    if (!HandleExit(*reason)) return;
  }
  finished_ = true;
}

bool VcpuRunner::HandleExit(uint32_t reason) {
  kvm_run* run = vcpu_.run();
  switch (reason) {
    case KVM_EXIT_IO:
      HandleIo();
      return true;
    case KVM_EXIT_MMIO:
      HandleMmio();
      return true;
    case KVM_EXIT_INTR:
      return true;
    case KVM_EXIT_SHUTDOWN:
      Finish(VcpuExit::Kind::kTripleFault,
             absl::StrCat("guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU ", vcpu_.id(), " ",
                          DescribeRip()));
      return false;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_RESET:
          Finish(VcpuExit::Kind::kReset, "guest reset");
          return false;
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          Finish(VcpuExit::Kind::kPowerOff, "guest powered off");
          return false;
        default:
          Finish(VcpuExit::Kind::kError,
                 absl::StrCat("KVM_EXIT_SYSTEM_EVENT type ", run->system_event.type,
                              " (guest crash) ", DescribeRip()));
          return false;
      }
    case KVM_EXIT_INTERNAL_ERROR:
      Finish(VcpuExit::Kind::kError,
             absl::StrCat("KVM_EXIT_INTERNAL_ERROR suberror ", run->internal.suberror, " (",
                          InternalErrorName(run->internal.suberror), ") on vCPU ", vcpu_.id(), " ",
                          DescribeRip()));
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      Finish(VcpuExit::Kind::kError,
             absl::StrCat("KVM_EXIT_FAIL_ENTRY hardware reason 0x",
                          absl::Hex(run->fail_entry.hardware_entry_failure_reason), " on vCPU ",
                          vcpu_.id(), " ", DescribeRip()));
      return false;
    default:
      Finish(VcpuExit::Kind::kError, absl::StrCat("unexpected ", ExitName(reason), " (", reason,
                                                  ") on vCPU ", vcpu_.id(), " ", DescribeRip()));
      return false;
  }
}

void VcpuRunner::HandleIo() {
  kvm_run* run = vcpu_.run();
  // data_offset and the sizes come from the kernel, not the guest.
  uint8_t* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
  const size_t size = run->io.size;
  for (uint32_t i = 0; i < run->io.count; ++i) {
    absl::Span<uint8_t> span(data + i * size, size);
    if (run->io.direction == KVM_EXIT_IO_IN) {
      // Reads from nothing float high, as on an ISA bus.
      if (!pio_bus_->Read(run->io.port, span)) {
        std::fill(span.begin(), span.end(), 0xff);
      }
    } else {
      pio_bus_->Write(run->io.port, span);
    }
  }
}

void VcpuRunner::HandleMmio() {
  kvm_run* run = vcpu_.run();
  const size_t length = std::min<size_t>(run->mmio.len, sizeof(run->mmio.data));
  absl::Span<uint8_t> span(run->mmio.data, length);
  if (run->mmio.is_write) {
    mmio_bus_->Write(run->mmio.phys_addr, span);
  } else if (!mmio_bus_->Read(run->mmio.phys_addr, span)) {
    std::fill(span.begin(), span.end(), 0xff);
  }
}

void VcpuRunner::Finish(VcpuExit::Kind kind, std::string reason) {
  finished_ = true;
  {
    absl::MutexLock lock(&mutex_);  // wake a Pause() waiting for us
  }
  if (on_exit_) on_exit_(VcpuExit{vcpu_.id(), kind, std::move(reason)});
}

std::string VcpuRunner::DescribeRip() const {
  absl::StatusOr<kvm_regs> regs = vcpu_.GetRegs();
  if (!regs.ok()) return "(registers unavailable)";
  return absl::StrCat("at rip=0x", absl::Hex(regs->rip));
}

}  // namespace hearth::vcpu
