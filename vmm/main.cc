// hearth-vmm: Hearth's virtual machine monitor.
//
// Standalone:  hearth-vmm --config=vm.json [--boot_timer]
//   boots the VM a Firecracker-style config file describes, copies the
//   serial console to stdout (and stdin to it), and exits 0 when the guest
//   resets or powers off, non-zero with a one-line reason otherwise.
//
// Flags may be spelled with dashes as Firecracker spells them
// (--config-file, --boot-timer).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "api/validate.h"
#include "common/status_macros.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "vmm/builder.h"
#include "vmm/config/from_api.h"
#include "vmm/console.h"

DEFINE_string(config, "", "Path of a Firecracker-format JSON config file to boot.");
DEFINE_string(config_file, "", "Alias of --config (Firecracker's name).");
DEFINE_bool(boot_timer, false,
            "Print boot timing (process start -> VM ready -> first guest "
            "output -> exit, microseconds) on stderr.");

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

absl::StatusOr<std::unique_ptr<Vmm>> BootStandalone(
    const std::string& config_path, BootTimer* timer) {
  ASSIGN_OR_RETURN(std::string json, ReadFile(config_path));
  ASSIGN_OR_RETURN(v1::VmConfig api_config, api::ParseVmConfigJson(json));
  PathOpener opener;
  ASSIGN_OR_RETURN(VmmConfig config, VmmConfigFromApi(api_config, &opener));
  ASSIGN_OR_RETURN(kvm::Kvm kvm, kvm::Kvm::Open());
  BuildOptions options;
  options.console = std::make_shared<FdConsoleOutput>(STDOUT_FILENO, timer);
  ASSIGN_OR_RETURN(std::unique_ptr<Vmm> vmm,
                   BuildVmm(std::move(kvm), std::move(config), std::move(options)));
  // Console input is best effort: stdin may be closed or /dev/null.
  if (::fcntl(STDIN_FILENO, F_SETFL,
              ::fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK) == 0) {
    (void)vmm->AttachConsoleInput(STDIN_FILENO);
  }
  timer->MarkVmReady();
  RETURN_IF_ERROR(vmm->Start());
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

int Main(const std::string& config_path) {
  BootTimer timer;
  absl::StatusOr<std::unique_ptr<Vmm>> vmm = BootStandalone(config_path, &timer);
  absl::StatusOr<VmOutcome> outcome =
      vmm.ok() ? (*vmm)->Run() : absl::StatusOr<VmOutcome>(vmm.status());
  timer.MarkExit();
  if (vmm.ok()) {
    timer.SetGuestResident((*vmm)->memory()->ResidentBytes());
    absl::Status flushed = (*vmm)->FlushMetrics();
    if (!flushed.ok()) LOG(WARNING) << flushed.message();
  }
  if (FLAGS_boot_timer) timer.Print(stderr);
  int status = Report(outcome);
  std::fflush(nullptr);
  // End the process without tearing the VM down first: the kernel releases
  // the VM, its memory and every fd at exit, and an explicit teardown only
  // adds a wait for one of KVM's SRCU grace periods (~15 ms on PVM hosts)
  // before the exit can be seen.
  ::_exit(status);
}

}  // namespace
}  // namespace hearth::vmm

int main(int argc, char** argv) {
  std::vector<std::string> args = hearth::vmm::NormalizeFlags(argc, argv);
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  int new_argc = static_cast<int>(arg_pointers.size());
  char** new_argv = arg_pointers.data();
  gflags::SetUsageMessage("hearth-vmm --config=vm.json [--boot_timer]");
  // Standalone runs are quiet unless something is wrong; --minloglevel=0
  // shows the VMM's INFO log.
  FLAGS_minloglevel = google::GLOG_WARNING;
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&new_argc, &new_argv, true);
  google::InitGoogleLogging("hearth-vmm");

  std::string config = !FLAGS_config.empty() ? FLAGS_config : FLAGS_config_file;
  if (config.empty()) {
    std::fprintf(stderr, "hearth-vmm: error: --config=FILE is required\n");
    return 2;
  }
  return hearth::vmm::Main(config);
}
