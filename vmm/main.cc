// hearth-vmm: Hearth's virtual machine monitor.
//
// Standalone:  hearth-vmm --config=vm.json [--boot_timer]
//   boots the VM a Firecracker-style config file describes, copies the
//   serial console to stdout (and stdin to it), and exits 0 when the guest
//   resets or powers off, non-zero with a one-line reason otherwise.
// Agent mode:  hearth-vmm --control_fd=N [--kvm_fd=M]
//   started by hearthd through hearth-jailer: waits for a Boot request on
//   the control channel (proto/hearth/vmm/v1/control.proto); every resource
//   arrives as an fd, no host path is ever opened.
//
// In both modes seccomp filters (vmm/seccomp) are installed on every thread
// before guest code runs. Flags may be spelled with dashes as Firecracker
// spells them (--config-file, --boot-timer).
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "api/validate.h"
#include "common/status_macros.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "vmm/builder.h"
#include "vmm/config/from_api.h"
#include "vmm/console.h"
#include "vmm/control/control_server.h"
#include "vmm/seccomp/seccomp.h"
#include "vmm/snapshot/snapshot.h"

DEFINE_string(config, "", "Path of a Firecracker-format JSON config file to boot.");
DEFINE_string(config_file, "", "Alias of --config (Firecracker's name).");
DEFINE_bool(boot_timer, false,
            "Print boot timing (process start -> VM ready -> first guest "
            "output -> exit, microseconds) on stderr.");
DEFINE_int32(control_fd, -1, "Agent mode: the control channel socket.");
DEFINE_int32(kvm_fd, -1, "An open /dev/kvm (a jailed VMM cannot open it).");
DEFINE_int32(reattach_fd, -1,
             "Agent mode: a listening socket on which a restarted agent re-attaches.");
DEFINE_int32(agent_uid, 0, "Agent mode: the only uid allowed to re-attach.");
#if defined(__SANITIZE_ADDRESS__)
// ASan's runtime makes system calls no allow-list expects.
constexpr bool kSeccompDefault = false;
#else
constexpr bool kSeccompDefault = true;
#endif
DEFINE_bool(seccomp, kSeccompDefault,
            "Install the seccomp filters (off only for debugging; always off "
            "in sanitizer builds).");
DEFINE_string(seccomp_test_violation, "",
              "Tests only: after the filters are in place, make a forbidden "
              "system call on the 'vcpu' or 'loop' thread.");

namespace hearth::vmm {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Firecracker spells flags with dashes; gflags wants underscores.
std::vector<std::string> NormalizeFlags(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && arg.rfind("--", 0) == 0) {
      size_t end = arg.find('=');
      std::string name = arg.substr(2, end == std::string::npos ? std::string::npos : end - 2);
      arg = absl::StrCat("--", absl::StrReplaceAll(name, {{"-", "_"}}),
                         end == std::string::npos ? "" : arg.substr(end));
    }
    args.push_back(arg);
  }
  return args;
}

absl::StatusOr<kvm::Kvm> OpenKvm() {
  if (FLAGS_kvm_fd >= 0) return kvm::Kvm::FromFd(UniqueFd(FLAGS_kvm_fd));
  return kvm::Kvm::Open();
}

void ViolateSeccomp() {
  // A call no list allows: the filter must kill the process.
  ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
}

// The two filters, compiled on a thread of their own while the VMM does
// other work (waits for Boot, builds the VM), with Abseil's set-up
// (PrepareAbseilForSeccomp may measure the TSC): milliseconds that would
// otherwise be on the way to the guest.
class SandboxCompiler {
 public:
  explicit SandboxCompiler(bool standalone) {
    if (!FLAGS_seccomp) return;
    SeccompOptions options;
    options.standalone = standalone;
    options.kick_signal = vcpu::VcpuRunner::KickSignal();
    PrepareProcessForSeccomp();  // before any other thread exists
    thread_ = std::thread([this, options] {
      PrepareAbseilForSeccomp();
      vcpu_ = CompileFilter(ThreadKind::kVcpu, options);
      loop_ = CompileFilter(ThreadKind::kEventLoop, options);
    });
  }
  ~SandboxCompiler() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  const absl::StatusOr<CompiledFilter>& vcpu() {
    Join();
    return vcpu_;
  }
  const absl::StatusOr<CompiledFilter>& loop() {
    Join();
    return loop_;
  }

 private:
  std::thread thread_;
  absl::StatusOr<CompiledFilter> vcpu_ = absl::UnknownError("not compiled");
  absl::StatusOr<CompiledFilter> loop_ = absl::UnknownError("not compiled");
};

// Starts the vCPUs with every thread under its seccomp filter before any
// guest code runs: each vCPU thread loads its filter and waits until the
// event-loop thread (this one) has loaded its own.
absl::Status StartSandboxed(Vmm* vmm, SandboxCompiler* filters, bool paused = false) {
  if (!FLAGS_seccomp) {
    LOG(WARNING) << "seccomp filters are off";
    return vmm->Start(nullptr, paused);
  }
  RETURN_IF_ERROR(filters->vcpu().status());
  RETURN_IF_ERROR(filters->loop().status());
  RETURN_IF_ERROR(InstallViolationReporter());
  auto go = std::make_shared<absl::Notification>();
  const std::string violation = FLAGS_seccomp_test_violation;
  // Each vCPU thread gets its own copy: `filters` may be gone by the time
  // a thread starts.
  CompiledFilter vcpu_filter = *filters->vcpu();
  RETURN_IF_ERROR(vmm->Start(
      [go, vcpu_filter, violation]() -> absl::Status {
        RETURN_IF_ERROR(LoadFilter(vcpu_filter));
        go->WaitForNotification();
        if (violation == "vcpu") ViolateSeccomp();
        return absl::OkStatus();
      },
      paused));
  absl::Status status = LoadFilter(*filters->loop());
  go->Notify();
  if (!status.ok()) {
    vmm->Stop(VmOutcome{VmOutcome::Kind::kError, std::string(status.message())});
    return status;
  }
  if (violation == "loop") ViolateSeccomp();
  return absl::OkStatus();
}

// Firecracker's logger: the VMM's glog output moves to the log file (stderr
// becomes it, so the seccomp reporter's line lands there too) at the level
// asked for.
void ApplyLogConfig(LogConfig* log) {
  if (log->file.valid() && ::dup2(log->file.get(), STDERR_FILENO) < 0) {
    LOG(ERROR) << "logger.log_path: dup2: " << std::strerror(errno);
  }
  log->file.Reset();
  if (log->min_level.has_value()) FLAGS_minloglevel = *log->min_level;
  FLAGS_log_prefix = log->prefix;
}

absl::StatusOr<std::unique_ptr<Vmm>> BootStandalone(const std::string& config_path,
                                                    BootTimer* timer) {
  SandboxCompiler filters(/*standalone=*/true);  // while the VM is built
  ASSIGN_OR_RETURN(std::string json, ReadFile(config_path));
  ASSIGN_OR_RETURN(hearth::v1::VmConfig api_config, api::ParseVmConfigJson(json));
  PathOpener opener;
  ASSIGN_OR_RETURN(VmmConfig config, VmmConfigFromApi(api_config, &opener));
  ApplyLogConfig(&config.log);
  ASSIGN_OR_RETURN(kvm::Kvm kvm, OpenKvm());
  BuildOptions options;
  options.console = std::make_shared<FdConsoleOutput>(STDOUT_FILENO, timer);
  ASSIGN_OR_RETURN(std::unique_ptr<Vmm> vmm,
                   BuildVmm(std::move(kvm), std::move(config), std::move(options)));
  // Console input is best effort: stdin may be closed or /dev/null.
  if (::fcntl(STDIN_FILENO, F_SETFL, ::fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK) == 0) {
    absl::Status attached = vmm->AttachConsoleInput(STDIN_FILENO);
    if (!attached.ok()) LOG(WARNING) << "no console input from stdin: " << attached.message();
  }
  timer->MarkVmReady();
  RETURN_IF_ERROR(StartSandboxed(vmm.get(), &filters));
  return vmm;
}

// Prints why the VM ended (if not cleanly) and returns the exit status.
int Report(const absl::StatusOr<VmOutcome>& outcome) {
  if (!outcome.ok()) {
    std::fprintf(stderr, "hearth-vmm: error: %s\n",
                 std::string(outcome.status().message()).c_str());
    return 1;
  }
  if (!outcome->clean()) {
    std::fprintf(stderr, "hearth-vmm: guest %s: %s\n", OutcomeName(outcome->kind),
                 outcome->reason.c_str());
    return 1;
  }
  return 0;
}

// End the process without tearing the VM down first: the kernel releases the
// VM, its memory and every fd at exit; an explicit teardown only adds waits
// (an SRCU grace period per irqfd, the in-kernel PIT's worker thread) before
// the exit can be seen.
[[noreturn]] void Exit(int status) {
  std::fflush(nullptr);
  ::_exit(status);
}

[[noreturn]] void RunStandalone(const std::string& config_path) {
  BootTimer timer;
  absl::StatusOr<std::unique_ptr<Vmm>> vmm = BootStandalone(config_path, &timer);
  absl::StatusOr<VmOutcome> outcome =
      vmm.ok() ? (*vmm)->Run() : absl::StatusOr<VmOutcome>(vmm.status());
  timer.MarkExit();
  if (vmm.ok()) {
    timer.SetGuestResident((*vmm)->memory()->ResidentBytes());
    absl::StatusOr<std::string> flushed = (*vmm)->FlushMetrics();
    if (!flushed.ok()) LOG(WARNING) << flushed.status().message();
  }
  if (FLAGS_boot_timer) timer.Print(stderr);
  Exit(Report(outcome));
}

[[noreturn]] void RunAgentMode() {
  BootTimer timer;  // from VMM start, like the standalone mode's
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) Exit(Report(loop.status()));
  ControlServer server(MessageChannel(UniqueFd(FLAGS_control_fd)), loop->get(), &timer);
  if (FLAGS_reattach_fd >= 0) {
    server.SetReattachListener(UniqueFd(FLAGS_reattach_fd), static_cast<uid_t>(FLAGS_agent_uid));
  }
  SandboxCompiler filters(/*standalone=*/false);  // while waiting for Boot
  absl::StatusOr<StartPlan> plan = server.RunUntilBoot();
  if (!plan.ok()) {
    // No agent (it went away before booting anything), or a Boot whose
    // resources were unusable: either way there is no VM to run.
    server.FailBoot(plan.status());
    Exit(Report(plan.status()));
  }
  ApplyLogConfig(&plan->config.log);
  UniqueFd console = server.TakeConsole();
  BuildOptions options;
  int console_fd = console.valid() ? console.get() : -1;
  auto output = std::make_shared<SocketConsoleOutput>(std::move(console),
                                                      [&timer] { timer.MarkFirstOutput(); });
  server.SetConsole(output);
  options.console = output;
  options.vsock_connector = server.MakeVsockConnector();
  options.event_loop = std::move(*loop);
  absl::StatusOr<kvm::Kvm> kvm = OpenKvm();
  absl::StatusOr<std::unique_ptr<Vmm>> vmm = absl::UnknownError("not built");
  if (!kvm.ok()) {
    vmm = kvm.status();
  } else if (plan->snapshot.has_value()) {
    vmm =
        snapshot::RestoreVmm(std::move(*kvm), *plan->snapshot, std::move(plan->snapshot_memory),
                             std::move(plan->config), std::move(options), plan->track_dirty_pages);
  } else {
    vmm = BuildVmm(std::move(*kvm), std::move(plan->config), std::move(options));
  }
  if (!vmm.ok()) {
    server.FailBoot(vmm.status());
    Exit(Report(vmm.status()));
  }
  if (console_fd >= 0) {
    absl::Status attached = (*vmm)->AttachConsoleInput(console_fd);
    if (!attached.ok()) LOG(WARNING) << "no console input: " << attached.message();
  }
  const bool paused = plan->snapshot.has_value() && !plan->resume;
  absl::Status started = StartSandboxed(vmm->get(), &filters, paused);
  // Answers the Boot or LoadSnapshot (after Start: Ready says whether the
  // VM is paused).
  if (started.ok()) {
    server.Attach(vmm->get());
  } else {
    server.FailBoot(started);
  }
  absl::StatusOr<VmOutcome> outcome =
      started.ok() ? (*vmm)->Run() : absl::StatusOr<VmOutcome>(started);
  if (outcome.ok()) {
    absl::StatusOr<std::string> flushed = (*vmm)->FlushMetrics();
    if (!flushed.ok()) LOG(WARNING) << "final metrics: " << flushed.status().message();
    server.SendGuestExit(*outcome);
  } else {
    server.SendGuestExit(
        VmOutcome{VmOutcome::Kind::kError, std::string(outcome.status().message())});
  }
  Exit(Report(outcome));
}

}  // namespace
}  // namespace hearth::vmm

int main(int argc, char** argv) {
  std::vector<std::string> args = hearth::vmm::NormalizeFlags(argc, argv);
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  int new_argc = static_cast<int>(arg_pointers.size());
  char** new_argv = arg_pointers.data();
  gflags::SetUsageMessage(
      "hearth-vmm --config=vm.json [--boot_timer]  |  hearth-vmm --control_fd=N [--kvm_fd=M]");
  // Quiet unless something is wrong; --minloglevel=0 shows the INFO log.
  FLAGS_minloglevel = google::GLOG_WARNING;
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&new_argc, &new_argv, true);
  google::InitGoogleLogging("hearth-vmm");

  if (FLAGS_control_fd >= 0) hearth::vmm::RunAgentMode();
  std::string config = !FLAGS_config.empty() ? FLAGS_config : FLAGS_config_file;
  if (config.empty()) {
    std::fprintf(stderr, "hearth-vmm: error: --config=FILE or --control_fd=N is required\n");
    return 2;
  }
  hearth::vmm::RunStandalone(config);
}
