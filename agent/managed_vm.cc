#include "agent/managed_vm.h"

#include <signal.h>

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/phases.h"
#include "glog/logging.h"
#include "google/protobuf/util/time_util.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;

namespace {

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

uint64_t Micros(absl::Duration d) { return static_cast<uint64_t>(absl::ToInt64Microseconds(d)); }

std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  return lines.empty() ? "" : lines.back();
}

const char* SignalName(int signal) {
  switch (signal) {
    case SIGKILL:
      return "SIGKILL";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGSYS:
      return "SIGSYS";
    case SIGTERM:
      return "SIGTERM";
    case SIGBUS:
      return "SIGBUS";
    default:
      return "signal";
  }
}

}  // namespace

void ManagedVm::SetState(api::VmState new_state, std::string reason, absl::Time now) {
  api::Vm* v = vm();
  if (new_state == api::VM_STATE_RUNNING && !v->status().has_started_at()) {
    *v->mutable_status()->mutable_started_at() = ToTimestamp(now);
  }
  if (!Live(new_state) && Live(v->state())) {
    *v->mutable_status()->mutable_stopped_at() = ToTimestamp(now);
  }
  v->set_state(new_state);
  v->mutable_status()->set_reason(std::move(reason));
  LOG(INFO) << "vm " << id() << ": " << StateName(new_state)
            << (v->status().reason().empty() ? "" : ": ") << v->status().reason();
}

void ManagedVm::ApplyReady(const control::Ready& ready, bool reattached, absl::Time now) {
  if (ready.protocol_version() != 1) {
    LOG(ERROR) << "vm " << id() << ": VMM speaks control protocol " << ready.protocol_version();
  }
  api::VmStatus* status = vm()->mutable_status();
  if (status->boot_timing().create_to_vmm_ready_us() == 0) {
    status->mutable_boot_timing()->set_create_to_vmm_ready_us(Micros(now - created));
  }
  api::Condition* condition = nullptr;
  for (api::Condition& c : *status->mutable_conditions()) {
    if (c.type() == "VmmReady") condition = &c;
  }
  if (condition == nullptr) {
    condition = status->add_conditions();
    condition->set_type("VmmReady");
    condition->set_reason("Ready");
  }
  if (condition->status() != api::CONDITION_STATUS_TRUE) {
    condition->set_status(api::CONDITION_STATUS_TRUE);
    *condition->mutable_last_transition_time() = ToTimestamp(now);
  }
  // A re-attached VMM tells us where its guest is. A STARTING VM whose
  // VMM says RUNNING was started by the agent before it restarted: the
  // start is done.
  if (ready.state() == control::VM_STATE_RUNNING && state() != api::VM_STATE_RUNNING) {
    vm()->set_state(api::VM_STATE_RUNNING);
    if (!status->has_started_at()) *status->mutable_started_at() = ToTimestamp(now);
    status->clear_reason();
  } else if (ready.state() == control::VM_STATE_PAUSED) {
    vm()->set_state(api::VM_STATE_PAUSED);
  } else if (reattached && ready.state() == control::VM_STATE_WAITING &&
             state() == api::VM_STATE_STARTING) {
    // The agent restarted between STARTING and sending the boot: nothing
    // was started, and InstanceStart (or the same CreateVm) may run again.
    vm()->set_state(api::VM_STATE_CONFIGURING);
  }
  if (state() == api::VM_STATE_CONFIGURING) status->set_reason("waiting for InstanceStart");
}

bool ManagedVm::NoteOutput(absl::Time now) {
  if (first_output_seen || start_requested == absl::InfinitePast()) return false;
  first_output_seen = true;
  vm()->mutable_status()->mutable_boot_timing()->set_start_to_first_output_us(
      Micros(now - start_requested));
  return true;
}

ExitDecision ExitReason(const std::optional<ExitStatus>& status,
                        const std::optional<control::GuestExit>& guest, const std::string& vmm_log,
                        const std::string& vm_log, const std::string& console_tail,
                        api::VmExit* exit) {
  exit->Clear();
  if (status.has_value() && status->exit_code.has_value()) exit->set_exit_code(*status->exit_code);
  if (status.has_value() && status->signal.has_value()) exit->set_signal(*status->signal);
  const std::string& log_tail = vmm_log;
  size_t bad = log_tail.rfind("bad syscall ");
  if (bad != std::string::npos) {
    std::string digits;
    for (size_t i = bad + 12;
         i < log_tail.size() && std::isdigit(static_cast<unsigned char>(log_tail[i])); ++i) {
      digits.push_back(log_tail[i]);
    }
    int number = 0;
    if (absl::SimpleAtoi(digits, &number)) exit->set_bad_syscall(number);
  }
  exit->set_console_tail(SanitizeUtf8(console_tail));
  if (guest.has_value()) {
    exit->set_guest_reset(guest->kind() == control::GuestExit::KIND_RESET ||
                          guest->kind() == control::GuestExit::KIND_TRIPLE_FAULT);
  }
  const bool known = status.has_value();
  const bool clean_exit = !known || (exit->has_exit_code() && exit->exit_code() == 0);
  if (guest.has_value() && clean_exit &&
      (guest->kind() == control::GuestExit::KIND_RESET ||
       guest->kind() == control::GuestExit::KIND_POWER_OFF ||
       guest->kind() == control::GuestExit::KIND_STOPPED)) {
    return {api::VM_STATE_STOPPED, guest->reason()};
  }
  if (guest.has_value() && guest->kind() != control::GuestExit::KIND_STOPPED) {
    return {api::VM_STATE_FAILED, guest->reason()};
  }
  if (exit->has_signal()) {
    return {api::VM_STATE_FAILED,
            exit->has_bad_syscall() ? absl::StrCat("bad syscall ", exit->bad_syscall(),
                                                   ": the VMM's seccomp filter killed it")
                                    : absl::StrCat("the VMM was killed by signal ", exit->signal(),
                                                   " (", SignalName(exit->signal()), ")")};
  }
  if (exit->has_exit_code()) {
    std::string last = SanitizeUtf8(LastLine(vmm_log + vm_log));
    return {api::VM_STATE_FAILED, absl::StrCat("the VMM exited with code ", exit->exit_code(),
                                               last.empty() ? "" : ": ", last)};
  }
  return {api::VM_STATE_FAILED,
          "the VMM exited while the agent was away (its exit status is unknown)"};
}

std::string SanitizeUtf8(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size();) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 2;
    if (ok) {
      out.append(in, i, n);
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

}  // namespace hearth::agent
