// hearthd under load, through its gRPC API on a unix socket, with real
// (jailed, when root) VMMs booting the test guest's idle scenario:
//   * create -> first guest output for N VMs, one at a time and from 8
//     clients at once: VMs per second per host core, p50/p99 latency;
//   * GetVm latency (p50/p99 of many calls);
//   * SIGKILL of a VMM -> FAILED, as seen by a WatchVms client;
//   * hearthd's RSS per VM (and the VMMs' own).
// Prints numbers; asserts nothing.
//
//   bench/agent [VMS]
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "tests/testing/agent.h"
#include "tests/testing/host.h"

namespace hearth::bench {
namespace {

namespace api = ::hearth::v1;
using testing::Agent;

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = std::min(values.size() - 1, static_cast<size_t>(q * values.size()));
  return values[index];
}

// Resident set size of a process, KiB.
uint64_t RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view view(line);
    if (absl::ConsumePrefix(&view, "VmRSS:")) {
      uint64_t kib = 0;
      (void)absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(view), " kB"), &kib);
      return kib;
    }
  }
  return 0;
}

api::VmConfig IdleConfig(const Agent& agent) {
  std::string kernel = agent.images() + "/guest.elf";
  if (::access(kernel.c_str(), R_OK) != 0) {
    std::ifstream in(testing::Runfile("tests/guest/guest.elf"), std::ios::binary);
    std::ofstream out(kernel, std::ios::binary);
    out << in.rdbuf();
  }
  api::VmConfig config;
  config.mutable_boot_source()->set_kernel_image_path(kernel);
  config.mutable_boot_source()->set_boot_args(
      "console=ttyS0 hearth.test=idle hearth.tick_ms=60000");
  config.mutable_machine_config()->set_vcpu_count(1);
  config.mutable_machine_config()->set_mem_size_mib(32);
  return config;
}

// CreateVm -> InstanceStart -> the first console byte, in milliseconds.
absl::StatusOr<double> CreateToFirstOutput(api::Hearth::Stub* stub, const std::string& id,
                                           const api::VmConfig& config) {
  absl::Time start = absl::Now();
  {
    grpc::ClientContext context;
    api::CreateVmRequest request;
    request.set_vm_id(id);
    *request.mutable_config() = config;
    api::Vm vm;
    grpc::Status status = stub->CreateVm(&context, request, &vm);
    if (!status.ok())
      return absl::InternalError(absl::StrCat("CreateVm: ", status.error_message()));
  }
  grpc::ClientContext console_context;
  auto console = stub->StreamConsole(&console_context);
  api::ConsoleRequest open;
  open.mutable_open()->set_vm_id(id);
  open.mutable_open()->set_replay(true);
  console->Write(open);
  {
    grpc::ClientContext context;
    api::PutActionRequest request;
    request.set_vm_id(id);
    request.mutable_action()->set_action_type("InstanceStart");
    api::PutActionResponse response;
    grpc::Status status = stub->PutAction(&context, request, &response);
    if (!status.ok()) return absl::InternalError(absl::StrCat("start: ", status.error_message()));
  }
  api::ConsoleChunk chunk;
  if (!console->Read(&chunk)) return absl::InternalError("the console ended without output");
  double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  console_context.TryCancel();
  while (console->Read(&chunk)) {
  }
  (void)console->Finish();
  return ms;
}

void DeleteAll(api::Hearth::Stub* stub) {
  grpc::ClientContext context;
  api::ListVmsResponse list;
  api::ListVmsRequest request;
  request.set_page_size(1000);
  (void)stub->ListVms(&context, request, &list);
  for (const api::Vm& vm : list.vms()) {
    grpc::ClientContext c;
    api::DeleteVmRequest d;
    d.set_vm_id(vm.vm_id());
    d.set_force(true);
    api::DeleteVmResponse r;
    (void)stub->DeleteVm(&c, d, &r);
  }
}

void Report(const char* what, int vms, absl::Duration wall, const std::vector<double>& ms) {
  long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  double per_s = vms / absl::ToDoubleSeconds(wall);
  std::printf(
      "%-28s %3d VMs in %6.2f s: %6.1f VMs/s = %5.1f VMs/s/core; "
      "create->first output p50 %6.1f ms, p99 %6.1f ms\n",
      what, vms, absl::ToDoubleSeconds(wall), per_s, per_s / static_cast<double>(cores),
      Percentile(ms, 0.5), Percentile(ms, 0.99));
}

int Main(int argc, char** argv) {
  int vms = argc > 1 ? std::atoi(argv[1]) : 50;
  std::string dir = testing::ShortTempDir();
  testing::AgentOptions options;
  options.flags = {"--max_vcpus=1024", "--max_vms=1024"};
  absl::StatusOr<std::unique_ptr<Agent>> started = Agent::Start(dir, options);
  if (!started.ok()) {
    std::fprintf(stderr, "agent: %s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  Agent& agent = **started;
  api::Hearth::Stub* stub = agent.stub();
  api::VmConfig config = IdleConfig(agent);
  std::printf("hearthd bench: %s KVM, %ld cores, %s VMMs, test guest (idle), 1 vCPU, 32 MiB\n",
              testing::KvmKindName(testing::DetectKvm()), ::sysconf(_SC_NPROCESSORS_ONLN),
              agent.jailed() ? "jailed" : "unjailed (--no_jail)");
  uint64_t rss_empty = RssKib(agent.pid());

  // Sequential.
  std::vector<double> sequential;
  absl::Time t0 = absl::Now();
  for (int i = 0; i < vms; ++i) {
    absl::StatusOr<double> ms = CreateToFirstOutput(stub, absl::StrCat("seq-", i), config);
    if (!ms.ok()) {
      std::fprintf(stderr, "seq-%d: %s\n", i, std::string(ms.status().message()).c_str());
      return 1;
    }
    sequential.push_back(*ms);
  }
  Report("sequential", vms, absl::Now() - t0, sequential);

  // Memory with `vms` VMs running.
  uint64_t rss_full = RssKib(agent.pid());
  uint64_t vmm_rss = 0;
  {
    grpc::ClientContext context;
    api::ListVmsResponse list;
    api::ListVmsRequest request;
    request.set_page_size(1000);
    (void)stub->ListVms(&context, request, &list);
    for (const api::Vm& vm : list.vms()) vmm_rss += RssKib(vm.status().vmm_pid());
  }

  // GetVm latency, with `vms` VMs present.
  std::vector<double> get_us;
  for (int i = 0; i < 2000; ++i) {
    grpc::ClientContext context;
    api::GetVmRequest request;
    request.set_vm_id(absl::StrCat("seq-", i % vms));
    api::Vm vm;
    absl::Time start = absl::Now();
    grpc::Status status = stub->GetVm(&context, request, &vm);
    get_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!status.ok()) return 1;
  }
  std::printf("GetVm (%d VMs, 2000 calls): p50 %.0f us, p99 %.0f us, max %.0f us\n", vms,
              Percentile(get_us, 0.5), Percentile(get_us, 0.99), Percentile(get_us, 1.0));

  // SIGKILL -> FAILED, seen through WatchVms.
  std::vector<double> kill_ms;
  for (int i = 0; i < std::min(vms, 10); ++i) {
    std::string id = absl::StrCat("seq-", i);
    grpc::ClientContext context;
    api::GetVmRequest get;
    get.set_vm_id(id);
    api::Vm vm;
    (void)stub->GetVm(&context, get, &vm);
    grpc::ClientContext watch_context;
    api::WatchVmsRequest watch;
    watch.set_vm_id(id);
    watch.set_resource_version(vm.resource_version());
    auto stream = stub->WatchVms(&watch_context, watch);
    absl::Time killed = absl::Now();
    ::kill(vm.status().vmm_pid(), SIGKILL);
    api::WatchEvent event;
    while (stream->Read(&event)) {
      if (event.vm().state() == api::VM_STATE_FAILED) {
        kill_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - killed));
        break;
      }
    }
    watch_context.TryCancel();
    while (stream->Read(&event)) {
    }
    (void)stream->Finish();
  }
  std::printf("VMM SIGKILL -> FAILED event (%zu VMs): p50 %.2f ms, max %.2f ms\n", kill_ms.size(),
              Percentile(kill_ms, 0.5), Percentile(kill_ms, 1.0));
  std::printf(
      "hearthd RSS: %llu KiB empty, %llu KiB with %d VMs: %.1f KiB per VM; "
      "VMM RSS %.0f KiB per VM\n",
      static_cast<unsigned long long>(rss_empty), static_cast<unsigned long long>(rss_full), vms,
      (static_cast<double>(rss_full) - static_cast<double>(rss_empty)) / vms,
      static_cast<double>(vmm_rss) / vms);
  absl::Time d0 = absl::Now();
  DeleteAll(stub);
  std::printf("DeleteVm (force) of %d VMs: %.1f ms each\n", vms,
              absl::ToDoubleMilliseconds(absl::Now() - d0) / vms);

  // Parallel: 8 clients.
  constexpr int kClients = 8;
  std::vector<double> parallel;
  std::mutex mutex;
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  t0 = absl::Now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto own = agent.NewStub();
      for (int i = next++; i < vms; i = next++) {
        absl::StatusOr<double> ms = CreateToFirstOutput(own.get(), absl::StrCat("par-", i), config);
        if (!ms.ok()) {
          failed = true;
          std::fprintf(stderr, "par-%d: %s\n", i, std::string(ms.status().message()).c_str());
          return;
        }
        std::lock_guard<std::mutex> lock(mutex);
        parallel.push_back(*ms);
      }
    });
  }
  for (auto& t : clients) t.join();
  if (failed) return 1;
  Report("8 clients in parallel", vms, absl::Now() - t0, parallel);
  DeleteAll(stub);
  agent.Stop(SIGTERM);
  std::string rm = absl::StrCat("rm -rf ", dir);
  (void)std::system(rm.c_str());
  return 0;
}

}  // namespace
}  // namespace hearth::bench

int main(int argc, char** argv) { return hearth::bench::Main(argc, argv); }
