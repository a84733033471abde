// hearthd end to end: a real agent on a unix socket, real jailed VMMs
// (when root), the freestanding test guest's `idle` scenario, driven with
// the generated C++ client. Covers the lifecycle, the state machine, many
// VMs at once, a killed VMM, a killed and restarted agent re-attaching to
// its running guests, malformed requests, idempotency, capacity, watches
// and what is left behind (processes, cgroups, directories, fds).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "tests/testing/agent.h"
#include "tests/testing/host.h"
#include "tests/testing/netns.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {
namespace {

namespace api = ::hearth::v1;

constexpr absl::Duration kBootTimeout = absl::Seconds(60);

// Copies the test guest into the agent's image root (once).
std::string GuestKernel(const Agent& agent) {
  std::string path = agent.images() + "/guest.elf";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    std::ifstream in(Runfile("tests/guest/guest.elf"), std::ios::binary);
    std::ofstream out(path, std::ios::binary);
    out << in.rdbuf();
  }
  return path;
}

api::VmConfig IdleConfig(const Agent& agent, uint32_t mem_mib = 32, uint32_t tick_ms = 200) {
  api::VmConfig config;
  config.mutable_boot_source()->set_kernel_image_path(GuestKernel(agent));
  config.mutable_boot_source()->set_boot_args(
      absl::StrCat("console=ttyS0 hearth.test=idle hearth.tick_ms=", tick_ms));
  config.mutable_machine_config()->set_vcpu_count(1);
  config.mutable_machine_config()->set_mem_size_mib(mem_mib);
  return config;
}

// Status of a unary call.
template <typename Request, typename Response>
grpc::Status Invoke(api::Hearth::Stub* stub,
                    grpc::Status (api::Hearth::Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
                    const Request& request, Response* response = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  Response ignored;
  return (stub->*method)(&context, request, response != nullptr ? response : &ignored);
}

api::Vm GetVm(api::Hearth::Stub* stub, const std::string& id) {
  api::GetVmRequest request;
  request.set_vm_id(id);
  api::Vm vm;
  grpc::Status status = Invoke(stub, &api::Hearth::Stub::GetVm, request, &vm);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return vm;
}

bool WaitForState(api::Hearth::Stub* stub, const std::string& id, api::VmState state,
                  absl::Duration timeout = absl::Seconds(30)) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (GetVm(stub, id).state() == state) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

grpc::Status CreateVm(api::Hearth::Stub* stub, const std::string& id, const api::VmConfig& config,
                      bool start, api::Vm* vm = nullptr,
                      std::map<std::string, std::string> labels = {}) {
  api::CreateVmRequest request;
  request.set_vm_id(id);
  *request.mutable_config() = config;
  request.set_start(start);
  for (const auto& [k, v] : labels) (*request.mutable_labels())[k] = v;
  return Invoke(stub, &api::Hearth::Stub::CreateVm, request, vm);
}

grpc::Status Action(api::Hearth::Stub* stub, const std::string& id, const std::string& type) {
  api::PutActionRequest request;
  request.set_vm_id(id);
  request.mutable_action()->set_action_type(type);
  return Invoke(stub, &api::Hearth::Stub::PutAction, request);
}

grpc::Status PatchVm(api::Hearth::Stub* stub, const std::string& id, const std::string& state) {
  api::PatchVmRequest request;
  request.set_vm_id(id);
  request.mutable_vm_state()->set_state(state);
  return Invoke(stub, &api::Hearth::Stub::PatchVm, request);
}

grpc::Status DeleteVm(api::Hearth::Stub* stub, const std::string& id, bool force,
                      bool* deleted = nullptr) {
  api::DeleteVmRequest request;
  request.set_vm_id(id);
  request.set_force(force);
  api::DeleteVmResponse response;
  grpc::Status status = Invoke(stub, &api::Hearth::Stub::DeleteVm, request, &response);
  if (deleted != nullptr) *deleted = response.deleted();
  return status;
}

// A StreamConsole subscriber: output collected by a reader thread.
class Console {
 public:
  Console(api::Hearth::Stub* stub, const std::string& vm_id, bool replay) {
    stream_ = stub->StreamConsole(&context_);
    api::ConsoleRequest open;
    open.mutable_open()->set_vm_id(vm_id);
    open.mutable_open()->set_replay(replay);
    stream_->Write(open);
    reader_ = std::thread([this] {
      api::ConsoleChunk chunk;
      while (stream_->Read(&chunk)) {
        std::lock_guard<std::mutex> lock(mutex_);
        text_ += chunk.data();
        changed_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      ended_ = true;
      changed_.notify_all();
    });
  }
  ~Console() {
    context_.TryCancel();
    reader_.join();
  }

  // Waits until the output contains `needle` after position `from`.
  bool WaitFor(const std::string& needle, absl::Duration timeout = kBootTimeout, size_t from = 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
      return text_.find(needle, std::min(from, text_.size())) != std::string::npos || ended_;
    }) && text_.find(needle, std::min(from, text_.size())) != std::string::npos;
  }
  bool WaitForEnd(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return ended_; });
  }
  void Send(const std::string& input) {
    api::ConsoleRequest request;
    request.set_input(input);
    stream_->Write(request);
  }
  grpc::Status Finish() {
    stream_->WritesDone();
    reader_.join();
    reader_ = std::thread([] {});
    return stream_->Finish();
  }
  std::string text() {
    std::lock_guard<std::mutex> lock(mutex_);
    return text_;
  }
  // The highest "idle: tick N" seen so far (0 if none).
  uint64_t LastTick() {
    uint64_t last = 0;
    for (absl::string_view line : absl::StrSplit(text(), '\n')) {
      uint64_t n;
      if (absl::ConsumePrefix(&line, "idle: tick ") &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &n)) {
        last = std::max(last, n);
      }
    }
    return last;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<api::ConsoleRequest, api::ConsoleChunk>> stream_;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string text_;
  bool ended_ = false;
};

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Everything the agent made for a VM's VMM is gone.
void ExpectNothingLeft(const Agent& agent, const std::string& id, pid_t vmm_pid,
                       const std::vector<std::string>& cgroup_dirs) {
  if (vmm_pid > 0) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (ProcessAlive(vmm_pid) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
    EXPECT_FALSE(ProcessAlive(vmm_pid))
        << "the VMM of " << id << " (pid " << vmm_pid << ") is still running";
  }
  EXPECT_FALSE(Exists(absl::StrCat(agent.dir(), "/run/vms/", id))) << "run directory of " << id;
  EXPECT_FALSE(Exists(absl::StrCat(agent.dir(), "/jail/hearth-vmm/", id))) << "jail of " << id;
  EXPECT_FALSE(Exists(absl::StrCat(agent.dir(), "/state/vms/", id, ".rec"))) << "record of " << id;
  for (const std::string& dir : cgroup_dirs) EXPECT_FALSE(Exists(dir)) << "cgroup " << dir;
}

// The VM's cgroup directories (present only while its VMM runs).
std::vector<std::string> CgroupDirs(const Agent&, const std::string& id) {
  return Agent::TestCgroups(id);
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HEARTH_REQUIRE_KVM();
    temp_ = std::make_unique<ScopedTempDir>("hearth-e2e-");
    dir_ = temp_->path();
    StartAgent();
  }

  void StartAgent(AgentOptions options = {}) {
    absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(dir_, options);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    if (!agent_->jailed()) {
      PrintSkipped(IsRoot() ? "jail: ASan build, VMMs run with --no_jail"
                            : "jail: needs root, VMMs run with --no_jail");
    }
  }

  void TearDown() override {
    if (agent_ == nullptr) return;
    // Delete whatever a failed test left, then stop the agent normally.
    api::ListVmsResponse list;
    (void)Invoke(stub(), &api::Hearth::Stub::ListVms, api::ListVmsRequest(), &list);
    for (const api::Vm& vm : list.vms()) (void)DeleteVm(stub(), vm.vm_id(), /*force=*/true);
    int status = agent_->Stop(SIGTERM);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "hearthd did not exit cleanly on SIGTERM (status " << status << ")";
    if (HasFailure()) {
      absl::StatusOr<std::string> log = ReadFile(agent_->log());
      if (log.ok())
        std::cerr << "--- hearthd log ---\n"
                  << log->substr(log->size() > 20000 ? log->size() - 20000 : 0);
    }
  }

  api::Hearth::Stub* stub() { return agent_->stub(); }

  // Removed after the agent has stopped (HEARTH_KEEP_TEST_DIRS=1 keeps it).
  std::unique_ptr<ScopedTempDir> temp_;
  std::string dir_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(AgentTest, ConfigureStartConsolePauseResumeCtrlAltDelDelete) {
  api::Vm vm;
  ASSERT_TRUE(CreateVm(stub(), "life", api::VmConfig(), false, &vm, {{"app", "e2e"}}).ok());
  EXPECT_EQ(vm.state(), api::VM_STATE_CONFIGURING);

  api::PutMachineConfigRequest machine;
  machine.set_vm_id("life");
  machine.mutable_machine_config()->set_vcpu_count(1);
  machine.mutable_machine_config()->set_mem_size_mib(32);
  api::MachineConfig machine_out;
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PutMachineConfig, machine, &machine_out).ok());
  EXPECT_EQ(machine_out.mem_size_mib(), 32u);
  EXPECT_EQ(machine_out.huge_pages(), "None");  // defaults filled in

  api::PutBootSourceRequest boot;
  boot.set_vm_id("life");
  *boot.mutable_boot_source() = IdleConfig(*agent_).boot_source();
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PutBootSource, boot).ok());

  // A read-only data drive (the idle guest does not read it; the VMM must
  // still open and attach it).
  std::string disk = agent_->images() + "/data.img";
  ASSERT_TRUE(WriteFile(disk, std::string(1 << 20, '\0')).ok());
  api::PutDriveRequest drive;
  drive.set_vm_id("life");
  drive.mutable_drive()->set_drive_id("data");
  drive.mutable_drive()->set_path_on_host(disk);
  drive.mutable_drive()->set_is_read_only(true);
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PutDrive, drive).ok());
  api::PutEntropyRequest entropy;
  entropy.set_vm_id("life");
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PutEntropy, entropy).ok());

  ASSERT_TRUE(Action(stub(), "life", "InstanceStart").ok());
  vm = GetVm(stub(), "life");
  EXPECT_EQ(vm.state(), api::VM_STATE_RUNNING);
  pid_t vmm_pid = vm.status().vmm_pid();
  EXPECT_GT(vmm_pid, 0);
  std::vector<std::string> cgroups = CgroupDirs(*agent_, "life");
  if (agent_->jailed()) {
    EXPECT_FALSE(cgroups.empty()) << "a jailed VM has cgroups";
  }

  Console console(stub(), "life", /*replay=*/true);
  ASSERT_TRUE(console.WaitFor("idle: ready")) << console.text();
  console.Send("hello hearth\n");
  ASSERT_TRUE(console.WaitFor("idle: echo hello hearth")) << console.text();

  api::GetInstanceInfoRequest info_request;
  info_request.set_vm_id("life");
  api::InstanceInfo info;
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::GetInstanceInfo, info_request, &info).ok());
  EXPECT_EQ(info.state(), "Running");
  EXPECT_EQ(info.app_name(), "hearth");

  // Paused: the guest's counter stops; resumed: it goes on from there.
  ASSERT_TRUE(console.WaitFor("idle: tick 2")) << console.text();
  ASSERT_TRUE(PatchVm(stub(), "life", "Paused").ok());
  EXPECT_EQ(GetVm(stub(), "life").state(), api::VM_STATE_PAUSED);
  EXPECT_TRUE(PatchVm(stub(), "life", "Paused").ok()) << "pausing a paused VM is a no-op";
  absl::SleepFor(absl::Milliseconds(300));  // output already in flight
  uint64_t paused_at = console.LastTick();
  absl::SleepFor(absl::Seconds(1));  // five ticks' worth
  EXPECT_EQ(console.LastTick(), paused_at) << "the guest ran while paused";
  ASSERT_TRUE(PatchVm(stub(), "life", "Resumed").ok());
  EXPECT_EQ(GetVm(stub(), "life").state(), api::VM_STATE_RUNNING);
  ASSERT_TRUE(console.WaitFor(absl::StrCat("idle: tick ", paused_at + 1))) << console.text();

  // Metrics come from the VMM's devices.
  ASSERT_TRUE(Action(stub(), "life", "FlushMetrics").ok());

  // Ctrl-Alt-Del: the guest reboots, which ends the VM.
  ASSERT_TRUE(Action(stub(), "life", "SendCtrlAltDel").ok());
  ASSERT_TRUE(WaitForState(stub(), "life", api::VM_STATE_STOPPED)) << console.text();
  EXPECT_TRUE(console.WaitForEnd(absl::Seconds(10))) << "the console stream ends with the VM";
  EXPECT_TRUE(console.Finish().ok());
  EXPECT_TRUE(absl::StrContains(console.text(), "HEARTH-TEST-PASS idle")) << console.text();
  vm = GetVm(stub(), "life");
  EXPECT_TRUE(vm.status().exit().guest_reset());
  EXPECT_EQ(vm.status().exit().exit_code(), 0);
  EXPECT_TRUE(absl::StrContains(vm.status().exit().console_tail(), "idle: ctrl-alt-del"));
  EXPECT_GT(vm.status().boot_timing().start_to_first_output_us(), 0u);

  bool deleted = false;
  ASSERT_TRUE(DeleteVm(stub(), "life", false, &deleted).ok());
  EXPECT_TRUE(deleted);
  ASSERT_TRUE(DeleteVm(stub(), "life", false, &deleted).ok()) << "deleting twice is fine";
  EXPECT_FALSE(deleted);
  ExpectNothingLeft(*agent_, "life", vmm_pid, cgroups);
  EXPECT_TRUE(Exists(disk)) << "the agent never removes client files";
}

// A limit file of the VM's cgroups ("" if no hierarchy of it has one).
std::string CgroupFile(const std::string& id, const std::string& file) {
  for (const std::string& dir : Agent::TestCgroups(id)) {
    absl::StatusOr<std::string> text = ReadFile(dir + "/" + file);
    if (text.ok()) return std::string(absl::StripAsciiWhitespace(*text));
  }
  return "";
}

// The cgroup limits follow a spec changed after CreateVm (the jailer set
// the first ones), and a limit the host refuses stops the start with a
// message instead of booting the VM without it.
TEST_F(AgentTest, CgroupLimitsFollowTheSpecOrStopTheStart) {
  if (!agent_->jailed()) {
    PrintSkipped("cgroup limits: VMMs run without a jail here");
    return;
  }
  ASSERT_TRUE(CreateVm(stub(), "lim", IdleConfig(*agent_, 32), false).ok());
  // The jailer makes the cgroups while CreateVm has already answered.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (CgroupFile("lim", "memory.limit_in_bytes").empty() &&
         CgroupFile("lim", "memory.max").empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::string file =
      CgroupFile("lim", "memory.limit_in_bytes").empty() ? "memory.max" : "memory.limit_in_bytes";
  uint64_t before = 0, after = 0;
  ASSERT_TRUE(absl::SimpleAtoi(CgroupFile("lim", file), &before)) << file;
  api::PatchMachineConfigRequest grow;
  grow.set_vm_id("lim");
  grow.mutable_machine_config()->set_mem_size_mib(64);
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PatchMachineConfig, grow).ok());
  ASSERT_TRUE(Action(stub(), "lim", "InstanceStart").ok());
  ASSERT_TRUE(absl::SimpleAtoi(CgroupFile("lim", file), &after)) << file;
  EXPECT_EQ(after - before, 32u << 20) << "the memory limit follows mem_size_mib";
  ASSERT_TRUE(DeleteVm(stub(), "lim", true).ok());

  // cgroup v1 refuses a child CPU quota above its parent's.
  std::string parent_quota;
  for (const std::string& dir : Agent::TestCgroups()) {
    if (Exists(dir + "/cpu.cfs_quota_us")) parent_quota = dir + "/cpu.cfs_quota_us";
  }
  if (parent_quota.empty()) {
    PrintSkipped("refused cgroup limit: no cgroup v1 cpu hierarchy on this host");
    return;
  }
  ASSERT_TRUE(CreateVm(stub(), "capped", IdleConfig(*agent_, 32), false).ok());
  ASSERT_TRUE(WriteFile(parent_quota, "100000").ok());  // one CPU for all the VMs
  api::PatchMachineConfigRequest two;
  two.set_vm_id("capped");
  two.mutable_machine_config()->set_vcpu_count(2);
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PatchMachineConfig, two).ok());
  grpc::Status start = Action(stub(), "capped", "InstanceStart");
  EXPECT_FALSE(start.ok());
  EXPECT_TRUE(absl::StrContains(start.error_message(), "setting the VM's cgroup limits"))
      << start.error_message();
  EXPECT_TRUE(absl::StrContains(start.error_message(), "cpu.cfs_quota_us"))
      << start.error_message();
  EXPECT_EQ(GetVm(stub(), "capped").state(), api::VM_STATE_CONFIGURING);
  ASSERT_TRUE(DeleteVm(stub(), "capped", true).ok());
  ASSERT_TRUE(WriteFile(parent_quota, "-1").ok());
}

// The balloon calls: what is missing (the device, statistics) is named
// before anything reaches a VMM; a booted VM's target follows PatchBalloon.
TEST_F(AgentTest, BalloonCallsNameWhatIsMissing) {
  using Code = grpc::StatusCode;
  ASSERT_TRUE(CreateVm(stub(), "bal", IdleConfig(*agent_, 32), false).ok());
  auto get = [&](const std::string& id, api::Balloon* out = nullptr) {
    api::GetBalloonRequest r;
    r.set_vm_id(id);
    return Invoke(stub(), &api::Hearth::Stub::GetBalloon, r, out);
  };
  auto get_stats = [&](const std::string& id) {
    api::GetBalloonStatisticsRequest r;
    r.set_vm_id(id);
    return Invoke(stub(), &api::Hearth::Stub::GetBalloonStatistics, r);
  };
  auto patch = [&](const std::string& id, uint32_t amount_mib, api::Balloon* out = nullptr) {
    api::PatchBalloonRequest r;
    r.set_vm_id(id);
    r.mutable_balloon()->set_amount_mib(amount_mib);
    return Invoke(stub(), &api::Hearth::Stub::PatchBalloon, r, out);
  };
  auto patch_stats = [&](const std::string& id, uint32_t interval_s) {
    api::PatchBalloonStatisticsRequest r;
    r.set_vm_id(id);
    r.mutable_statistics()->set_stats_polling_interval_s(interval_s);
    return Invoke(stub(), &api::Hearth::Stub::PatchBalloonStatistics, r);
  };

  EXPECT_EQ(get("nosuchvm").error_code(), Code::NOT_FOUND);
  for (const grpc::Status& status : {get("bal"), get_stats("bal"), patch("bal", 4)}) {
    EXPECT_EQ(status.error_code(), Code::NOT_FOUND) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "vm \"bal\" has no balloon device"))
        << status.error_message();
  }

  api::PutBalloonRequest put;
  put.set_vm_id("bal");
  put.mutable_balloon()->set_amount_mib(8);
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PutBalloon, put).ok());
  api::Balloon balloon;
  ASSERT_TRUE(get("bal", &balloon).ok());
  EXPECT_EQ(balloon.amount_mib(), 8u);
  for (const grpc::Status& status : {get_stats("bal"), patch_stats("bal", 1)}) {
    EXPECT_EQ(status.error_code(), Code::FAILED_PRECONDITION) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "not enabled before boot"))
        << status.error_message();
  }
  grpc::Status zero = patch_stats("bal", 0);
  EXPECT_EQ(zero.error_code(), Code::INVALID_ARGUMENT) << zero.error_message();
  grpc::Status too_big = patch("bal", 33);
  EXPECT_EQ(too_big.error_code(), Code::INVALID_ARGUMENT) << too_big.error_message();
  EXPECT_TRUE(absl::StrContains(too_big.error_message(), "balloon.amount_mib: 33 MiB"))
      << too_big.error_message();
  grpc::Status before_boot = patch("bal", 4);
  EXPECT_EQ(before_boot.error_code(), Code::FAILED_PRECONDITION) << before_boot.error_message();

  ASSERT_TRUE(Action(stub(), "bal", "InstanceStart").ok());
  Console console(stub(), "bal", true);
  ASSERT_TRUE(console.WaitFor("idle: ready")) << console.text();
  ASSERT_TRUE(patch("bal", 4, &balloon).ok());
  EXPECT_EQ(balloon.amount_mib(), 4u);
  ASSERT_TRUE(get("bal", &balloon).ok());
  EXPECT_EQ(balloon.amount_mib(), 4u);
  ASSERT_TRUE(DeleteVm(stub(), "bal", true).ok());
}

// Firecracker's pre-boot / post-boot rules: every RPC in every state.
TEST_F(AgentTest, EveryRpcAnswersForTheStateTheVmIsIn) {
  using Code = grpc::StatusCode;
  auto config = IdleConfig(*agent_);
  struct Probe {
    std::string name;
    std::function<grpc::Status(const std::string& id)> call;
  };
  std::vector<Probe> probes = {
      {"PutMachineConfig",
       [&](const std::string& id) {
         api::PutMachineConfigRequest r;
         r.set_vm_id(id);
         r.mutable_machine_config()->set_vcpu_count(1);
         r.mutable_machine_config()->set_mem_size_mib(32);
         return Invoke(stub(), &api::Hearth::Stub::PutMachineConfig, r);
       }},
      {"PatchMachineConfig",
       [&](const std::string& id) {
         api::PatchMachineConfigRequest r;
         r.set_vm_id(id);
         r.mutable_machine_config()->set_mem_size_mib(32);
         return Invoke(stub(), &api::Hearth::Stub::PatchMachineConfig, r);
       }},
      {"PutBootSource",
       [&](const std::string& id) {
         api::PutBootSourceRequest r;
         r.set_vm_id(id);
         *r.mutable_boot_source() = config.boot_source();
         return Invoke(stub(), &api::Hearth::Stub::PutBootSource, r);
       }},
      {"PutEntropy",
       [&](const std::string& id) {
         api::PutEntropyRequest r;
         r.set_vm_id(id);
         return Invoke(stub(), &api::Hearth::Stub::PutEntropy, r);
       }},
      {"InstanceStart", [&](const std::string& id) { return Action(stub(), id, "InstanceStart"); }},
      {"SendCtrlAltDel",
       [&](const std::string& id) { return Action(stub(), id, "SendCtrlAltDel"); }},
      {"FlushMetrics", [&](const std::string& id) { return Action(stub(), id, "FlushMetrics"); }},
      {"Pause", [&](const std::string& id) { return PatchVm(stub(), id, "Paused"); }},
      {"Resume", [&](const std::string& id) { return PatchVm(stub(), id, "Resumed"); }},
      {"PatchDrive",
       [&](const std::string& id) {
         api::PatchDriveRequest r;
         r.set_vm_id(id);
         r.mutable_drive()->set_drive_id("rootfs");
         r.mutable_drive()->mutable_rate_limiter()->mutable_ops()->set_size(100);
         r.mutable_drive()->mutable_rate_limiter()->mutable_ops()->set_refill_time(100);
         return Invoke(stub(), &api::Hearth::Stub::PatchDrive, r);
       }},
      {"GetVmConfig",
       [&](const std::string& id) {
         api::GetVmConfigRequest r;
         r.set_vm_id(id);
         return Invoke(stub(), &api::Hearth::Stub::GetVmConfig, r);
       }},
      {"GetMachineConfig",
       [&](const std::string& id) {
         api::GetMachineConfigRequest r;
         r.set_vm_id(id);
         return Invoke(stub(), &api::Hearth::Stub::GetMachineConfig, r);
       }},
      {"GetMmds",
       [&](const std::string& id) {
         api::GetMmdsRequest r;
         r.set_vm_id(id);
         return Invoke(stub(), &api::Hearth::Stub::GetMmds, r);
       }},
      {"CreateSnapshot",
       [&](const std::string& id) {
         api::CreateSnapshotRequest r;
         r.set_vm_id(id);
         r.mutable_params()->set_snapshot_path(agent_->images() + "/sm.state");
         r.mutable_params()->set_mem_file_path(agent_->images() + "/sm.memory");
         return Invoke(stub(), &api::Hearth::Stub::CreateSnapshot, r);
       }},
  };
  // Expected codes per state; the probe order above. The post-boot
  // PatchDrive names a drive the VM does not have: NOT_FOUND once allowed.
  const Code OK = Code::OK, FP = Code::FAILED_PRECONDITION, NF = Code::NOT_FOUND,
             UN = Code::UNIMPLEMENTED;
  std::map<std::string, std::vector<Code>> expected = {
      //               MC  PMC BS  Ent Start CAD Flush Pause Resume PatchDrive Cfg GetMC Mmds Snap
      {"CONFIGURING", {OK, OK, OK, OK, OK, FP, FP, FP, FP, FP, OK, OK, UN, FP}},
      {"RUNNING", {FP, FP, FP, FP, FP, OK, OK, OK, OK, NF, OK, OK, UN, FP}},
      {"PAUSED", {FP, FP, FP, FP, FP, FP, OK, OK, OK, NF, OK, OK, UN, OK}},
      {"STOPPED", {FP, FP, FP, FP, FP, FP, FP, FP, FP, FP, OK, OK, UN, FP}},
  };

  auto check = [&](const std::string& state, const std::string& id, size_t skip_index) {
    for (size_t i = 0; i < probes.size(); ++i) {
      if (i == skip_index) continue;
      grpc::Status status = probes[i].call(id);
      EXPECT_EQ(status.error_code(), expected[state][i])
          << probes[i].name << " on a " << state << " VM: " << status.error_message();
      if (status.error_code() == Code::FAILED_PRECONDITION) {
        EXPECT_TRUE(absl::StrContains(status.error_message(), state))
            << probes[i].name << ": the message names the state: " << status.error_message();
      }
    }
  };

  // CONFIGURING: every pre-boot call works; InstanceStart is probed last
  // (it leaves the state). Post-boot calls are refused.
  ASSERT_TRUE(CreateVm(stub(), "sm", api::VmConfig(), false).ok());
  for (size_t i = 0; i < probes.size(); ++i) {
    if (probes[i].name == "InstanceStart") continue;
    grpc::Status status = probes[i].call("sm");
    EXPECT_EQ(status.error_code(), expected["CONFIGURING"][i])
        << probes[i].name << " on a CONFIGURING VM: " << status.error_message();
  }
  ASSERT_TRUE(probes[4].call("sm").ok()) << "InstanceStart on a configured VM";
  ASSERT_EQ(GetVm(stub(), "sm").state(), api::VM_STATE_RUNNING);
  Console console(stub(), "sm", true);
  ASSERT_TRUE(console.WaitFor("idle: ready")) << console.text();
  // RUNNING: Pause then Resume leaves it RUNNING; Ctrl-Alt-Del would end it.
  check("RUNNING", "sm", /*skip=*/5);
  ASSERT_EQ(GetVm(stub(), "sm").state(), api::VM_STATE_RUNNING);
  ASSERT_TRUE(PatchVm(stub(), "sm", "Paused").ok());
  check("PAUSED", "sm", /*skip=*/8);  // Resume would leave PAUSED
  ASSERT_EQ(GetVm(stub(), "sm").state(), api::VM_STATE_PAUSED);
  ASSERT_TRUE(PatchVm(stub(), "sm", "Resumed").ok());
  ASSERT_TRUE(Action(stub(), "sm", "SendCtrlAltDel").ok());
  ASSERT_TRUE(WaitForState(stub(), "sm", api::VM_STATE_STOPPED));
  check("STOPPED", "sm", probes.size());

  // Deleting a running VM needs force.
  ASSERT_TRUE(CreateVm(stub(), "sm2", config, true).ok());
  grpc::Status refused = DeleteVm(stub(), "sm2", false);
  EXPECT_EQ(refused.error_code(), Code::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "RUNNING")) << refused.error_message();
  EXPECT_TRUE(DeleteVm(stub(), "sm2", true).ok());
}

TEST_F(AgentTest, TwentyVmsAtOnce) {
  constexpr int kVms = 20;
  agent_->Stop(SIGTERM);
  AgentOptions options;
  options.flags = {"--max_vcpus=64"};  // the default admits 4 per host CPU
  StartAgent(options);
  int fds_before = agent_->OpenFds();
  std::vector<std::thread> creators;
  std::vector<grpc::Status> results(kVms);
  for (int i = 0; i < kVms; ++i) {
    creators.emplace_back([&, i] {
      auto own_stub = agent_->NewStub();
      results[i] = CreateVm(own_stub.get(), absl::StrCat("many-", i), IdleConfig(*agent_, 16), true,
                            nullptr, {{"batch", "many"}, {"parity", i % 2 ? "odd" : "even"}});
    });
  }
  for (auto& t : creators) t.join();
  for (int i = 0; i < kVms; ++i)
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error_message();

  std::set<pid_t> pids;
  std::vector<std::vector<std::string>> cgroups;
  for (int i = 0; i < kVms; ++i) {
    std::string id = absl::StrCat("many-", i);
    Console console(stub(), id, true);
    ASSERT_TRUE(console.WaitFor("idle: tick 1")) << id << ": " << console.text();
    pids.insert(GetVm(stub(), id).status().vmm_pid());
    cgroups.push_back(CgroupDirs(*agent_, id));
  }
  EXPECT_EQ(pids.size(), static_cast<size_t>(kVms)) << "one VMM per VM";

  api::ListVmsRequest list;
  list.set_label_selector("batch=many,parity=odd");
  list.set_page_size(4);
  std::set<std::string> odd;
  while (true) {
    api::ListVmsResponse page;
    ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::ListVms, list, &page).ok());
    for (const api::Vm& vm : page.vms()) odd.insert(vm.vm_id());
    EXPECT_LE(page.vms_size(), 4);
    if (page.next_page_token().empty()) break;
    list.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(odd.size(), static_cast<size_t>(kVms / 2));

  api::HostInfo host;
  ASSERT_TRUE(
      Invoke(stub(), &api::Hearth::Stub::GetHostInfo, api::GetHostInfoRequest(), &host).ok());
  EXPECT_EQ(host.allocated().vms(), static_cast<uint32_t>(kVms));
  EXPECT_EQ(host.allocated().memory_mib(), 16u * kVms);

  for (int i = 0; i < kVms; ++i) ASSERT_TRUE(DeleteVm(stub(), absl::StrCat("many-", i), true).ok());
  for (int k = 0; k < kVms; ++k)
    ExpectNothingLeft(*agent_, absl::StrCat("many-", k), 0, cgroups[k]);
  for (pid_t pid : pids) EXPECT_FALSE(ProcessAlive(pid)) << "VMM " << pid;
  EXPECT_EQ(agent_->OpenFds(), fds_before) << "the agent leaks file descriptors";
}

TEST_F(AgentTest, KilledVmmMakesTheVmFailedWithTheSignal) {
  ASSERT_TRUE(CreateVm(stub(), "victim", IdleConfig(*agent_), true).ok());
  Console console(stub(), "victim", true);
  ASSERT_TRUE(console.WaitFor("idle: tick 1")) << console.text();
  api::Vm vm = GetVm(stub(), "victim");
  pid_t pid = vm.status().vmm_pid();
  std::vector<std::string> cgroups = CgroupDirs(*agent_, "victim");
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForState(stub(), "victim", api::VM_STATE_FAILED));
  vm = GetVm(stub(), "victim");
  EXPECT_EQ(vm.status().exit().signal(), SIGKILL);
  EXPECT_TRUE(absl::StrContains(vm.status().reason(), "SIGKILL")) << vm.status().reason();
  EXPECT_TRUE(absl::StrContains(vm.status().exit().console_tail(), "idle: tick"));
  EXPECT_EQ(vm.status().vmm_pid(), 0);
  for (const std::string& dir : cgroups) EXPECT_FALSE(Exists(dir)) << "cgroup " << dir;
  EXPECT_TRUE(console.WaitForEnd(absl::Seconds(10)));
  ASSERT_TRUE(DeleteVm(stub(), "victim", false).ok()) << "a FAILED VM deletes without force";
  ExpectNothingLeft(*agent_, "victim", pid, cgroups);
}

TEST_F(AgentTest, RestartedAgentReattachesToTheRunningGuest) {
  ASSERT_TRUE(CreateVm(stub(), "survivor", IdleConfig(*agent_), true, nullptr, {{"k", "v"}}).ok());
  ASSERT_TRUE(CreateVm(stub(), "doomed", IdleConfig(*agent_), true).ok());
  ASSERT_TRUE(CreateVm(stub(), "waiting", api::VmConfig(), false).ok());
  ASSERT_TRUE(CreateVm(stub(), "unreachable", IdleConfig(*agent_), true).ok());
  uint64_t before;
  pid_t pid, doomed_pid;
  pid_t unreachable_pid = GetVm(stub(), "unreachable").status().vmm_pid();
  std::vector<std::string> unreachable_cgroups = CgroupDirs(*agent_, "unreachable");
  {
    Console console(stub(), "survivor", true);
    ASSERT_TRUE(console.WaitFor("idle: tick 2")) << console.text();
    before = console.LastTick();
    pid = GetVm(stub(), "survivor").status().vmm_pid();
    doomed_pid = GetVm(stub(), "doomed").status().vmm_pid();
  }
  uint64_t version = GetVm(stub(), "survivor").resource_version();

  // The agent dies without warning; one VMM dies while it is away, and
  // another's re-attach socket is removed (it cannot be driven any more).
  agent_->Stop(SIGKILL);
  EXPECT_TRUE(ProcessAlive(pid)) << "a VMM outlives its agent";
  ::kill(doomed_pid, SIGKILL);
  ASSERT_EQ(::unlink(absl::StrCat(agent_->dir(), "/run/vms/unreachable/control.sock").c_str()), 0);
  absl::SleepFor(absl::Milliseconds(500));
  StartAgent();

  api::Vm vm = GetVm(stub(), "survivor");
  EXPECT_EQ(vm.state(), api::VM_STATE_RUNNING);
  EXPECT_EQ(vm.status().vmm_pid(), pid) << "the same VMM, not a new boot";
  EXPECT_EQ(vm.labels().at("k"), "v");
  EXPECT_GT(vm.resource_version(), 0u);
  ASSERT_TRUE(WaitForState(stub(), "doomed", api::VM_STATE_FAILED));
  EXPECT_TRUE(absl::StrContains(GetVm(stub(), "doomed").status().reason(), "agent was down"))
      << GetVm(stub(), "doomed").status().reason();
  EXPECT_EQ(GetVm(stub(), "waiting").state(), api::VM_STATE_CONFIGURING);
  // A VMM the agent cannot reach is ended, not left running unsupervised.
  ASSERT_TRUE(WaitForState(stub(), "unreachable", api::VM_STATE_FAILED));
  EXPECT_TRUE(absl::StrContains(GetVm(stub(), "unreachable").status().reason(), "cannot re-attach"))
      << GetVm(stub(), "unreachable").status().reason();

  // Resource versions never go back.
  api::ListVmsResponse list;
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::ListVms, api::ListVmsRequest(), &list).ok());
  EXPECT_GT(list.resource_version(), version);

  // The guest never noticed: its counter continues, input still reaches it.
  Console console(stub(), "survivor", false);
  ASSERT_TRUE(console.WaitFor(absl::StrCat("idle: tick ", before + 1))) << console.text();
  EXPECT_FALSE(absl::StrContains(console.text(), "idle: ready")) << "the guest rebooted";
  console.Send("still here\n");
  ASSERT_TRUE(console.WaitFor("idle: echo still here")) << console.text();
  ASSERT_TRUE(PatchVm(stub(), "survivor", "Paused").ok());
  ASSERT_TRUE(PatchVm(stub(), "survivor", "Resumed").ok());
  std::vector<std::string> cgroups = CgroupDirs(*agent_, "survivor");
  ASSERT_TRUE(Action(stub(), "survivor", "SendCtrlAltDel").ok());
  ASSERT_TRUE(WaitForState(stub(), "survivor", api::VM_STATE_STOPPED));
  EXPECT_TRUE(GetVm(stub(), "survivor").status().exit().guest_reset());

  // A configuring VM's VMM was re-attached too: it still boots.
  api::PutBootSourceRequest boot;
  boot.set_vm_id("waiting");
  *boot.mutable_boot_source() = IdleConfig(*agent_).boot_source();
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::PutBootSource, boot).ok());
  ASSERT_TRUE(Action(stub(), "waiting", "InstanceStart").ok());
  Console waiting(stub(), "waiting", true);
  ASSERT_TRUE(waiting.WaitFor("idle: ready")) << waiting.text();

  for (const char* id : {"survivor", "doomed", "waiting", "unreachable"}) {
    ASSERT_TRUE(DeleteVm(stub(), id, true).ok()) << id;
  }
  ExpectNothingLeft(*agent_, "survivor", pid, cgroups);
  ExpectNothingLeft(*agent_, "doomed", doomed_pid, {});
  ExpectNothingLeft(*agent_, "unreachable", unreachable_pid, unreachable_cgroups);
}

// Garbage in, the right code out, and the agent stays healthy.
TEST_F(AgentTest, MalformedRequestsGetTheRightCodes) {
  using Code = grpc::StatusCode;
  ASSERT_TRUE(CreateVm(stub(), "target", api::VmConfig(), false).ok());
  std::mt19937 random(1234);
  // Printable (a proto3 string must be UTF-8) but never a valid id.
  auto garbage = [&](size_t n) {
    std::string s = "!";
    while (s.size() < n) s.push_back(static_cast<char>(0x21 + random() % 94));
    return s;
  };
  std::string outside = MakeTempDir("outside") + "/kernel";
  ASSERT_TRUE(WriteFile(outside, "x").ok());
  ASSERT_EQ(::symlink(outside.c_str(), (agent_->images() + "/escape").c_str()), 0);
  int checked = 0;
  auto expect = [&](grpc::Status status, Code code, const std::string& what,
                    const std::string& mentions = "") {
    ++checked;
    EXPECT_EQ(status.error_code(), code) << what << ": " << status.error_message();
    if (!mentions.empty()) {
      EXPECT_TRUE(absl::StrContains(status.error_message(), mentions))
          << what << ": message should name " << mentions << ": " << status.error_message();
    }
  };
  for (int i = 0; i < 40; ++i) {
    std::string bad_id = i % 4 == 0   ? ""
                         : i % 4 == 1 ? garbage(1 + random() % 80)
                         : i % 4 == 2 ? std::string(65 + random() % 4000, 'a')
                                      : "has space";
    api::GetVmRequest get;
    get.set_vm_id(bad_id);
    expect(Invoke(stub(), &api::Hearth::Stub::GetVm, get), Code::INVALID_ARGUMENT, "GetVm bad id",
           "vm_id");
    expect(CreateVm(stub(), bad_id, api::VmConfig(), false), Code::INVALID_ARGUMENT,
           "CreateVm bad id", "vm_id");
    expect(Action(stub(), bad_id, "InstanceStart"), Code::INVALID_ARGUMENT, "start bad id");
    expect(Action(stub(), "target", garbage(1 + random() % 40)), Code::INVALID_ARGUMENT,
           "unknown action", "action_type");
    expect(PatchVm(stub(), "target", garbage(8)), Code::INVALID_ARGUMENT, "PatchVm state",
           "vm_state.state");
  }
  for (int i = 0; i < 10; ++i) {
    api::GetVmRequest get;
    get.set_vm_id(absl::StrCat("absent-", i));
    expect(Invoke(stub(), &api::Hearth::Stub::GetVm, get), Code::NOT_FOUND, "GetVm absent");
    api::PutBootSourceRequest boot;
    boot.set_vm_id("target");
    std::vector<std::string> paths = {"/etc/passwd", agent_->images() + "/../../etc/passwd",
                                      agent_->images() + "/escape", "relative/kernel"};
    boot.mutable_boot_source()->set_kernel_image_path(paths[i % paths.size()]);
    expect(Invoke(stub(), &api::Hearth::Stub::PutBootSource, boot), Code::PERMISSION_DENIED,
           "kernel outside the image roots", "boot_source.kernel_image_path");
    api::PutBootSourceRequest missing;
    missing.set_vm_id("target");
    missing.mutable_boot_source()->set_kernel_image_path(agent_->images() + "/missing-" +
                                                         std::to_string(i));
    expect(Invoke(stub(), &api::Hearth::Stub::PutBootSource, missing), Code::INVALID_ARGUMENT,
           "kernel that does not exist", "boot_source.kernel_image_path");
    api::PutMachineConfigRequest machine;
    machine.set_vm_id("target");
    machine.mutable_machine_config()->set_vcpu_count(i % 2 ? 0 : 1000);
    machine.mutable_machine_config()->set_mem_size_mib(128);
    expect(Invoke(stub(), &api::Hearth::Stub::PutMachineConfig, machine), Code::INVALID_ARGUMENT,
           "vcpu_count", "machine_config.vcpu_count");
    api::PutDriveRequest drive;
    drive.set_vm_id("target");
    drive.mutable_drive()->set_drive_id(garbage(10));
    drive.mutable_drive()->set_path_on_host(agent_->images() + "/x");
    expect(Invoke(stub(), &api::Hearth::Stub::PutDrive, drive), Code::INVALID_ARGUMENT, "drive id",
           "drive.drive_id");
    api::ListVmsRequest list;
    list.set_label_selector(i % 2 ? "a in (b,c)" : "=v");
    expect(Invoke(stub(), &api::Hearth::Stub::ListVms, list), Code::INVALID_ARGUMENT, "selector",
           "label_selector");
    api::ListVmsRequest token;
    token.set_page_token(garbage(20));
    expect(Invoke(stub(), &api::Hearth::Stub::ListVms, token), Code::INVALID_ARGUMENT, "page token",
           "page_token");
    api::PutNetworkInterfaceRequest net;
    net.set_vm_id("target");
    net.mutable_network_interface()->set_iface_id("eth0");
    net.mutable_network_interface()->set_host_dev_name(i % 2 ? "no-such-tap0" : "bad/name");
    expect(Invoke(stub(), &api::Hearth::Stub::PutNetworkInterface, net), Code::INVALID_ARGUMENT,
           "tap", "host_dev_name");
  }
  EXPECT_GE(checked, 200);
  api::HostInfo host;
  ASSERT_TRUE(
      Invoke(stub(), &api::Hearth::Stub::GetHostInfo, api::GetHostInfoRequest(), &host).ok())
      << "the agent is still healthy";
  EXPECT_EQ(GetVm(stub(), "target").state(), api::VM_STATE_CONFIGURING);
  EXPECT_FALSE(GetVm(stub(), "target").spec().has_boot_source()) << "nothing bad was stored";
}

TEST_F(AgentTest, CreateIsIdempotentAndConflictsNameTheFields) {
  api::VmConfig config = IdleConfig(*agent_);
  api::Vm first, again;
  ASSERT_TRUE(CreateVm(stub(), "same", config, false, &first, {{"a", "1"}}).ok());
  ASSERT_TRUE(CreateVm(stub(), "same", config, false, &again, {{"a", "1"}}).ok());
  EXPECT_EQ(first.status().vmm_pid(), again.status().vmm_pid()) << "no second VMM";
  api::VmConfig other = config;
  other.mutable_machine_config()->set_vcpu_count(2);
  grpc::Status conflict = CreateVm(stub(), "same", other, false, nullptr, {{"a", "2"}});
  EXPECT_EQ(conflict.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(absl::StrContains(conflict.error_message(), "vcpu_count"))
      << conflict.error_message();
  EXPECT_TRUE(absl::StrContains(conflict.error_message(), "labels")) << conflict.error_message();
}

TEST_F(AgentTest, CapacityIsEnforcedAndReported) {
  agent_->Stop(SIGTERM);
  AgentOptions options;
  options.flags = {"--max_vcpus=3", "--max_memory_mib=96"};
  StartAgent(options);
  api::VmConfig two = IdleConfig(*agent_, 32);
  two.mutable_machine_config()->set_vcpu_count(2);
  grpc::Status big = CreateVm(stub(), "big", two, false);
  ASSERT_TRUE(big.ok()) << big.error_message();
  grpc::Status full = CreateVm(stub(), "too-many", two, false);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << full.error_message();
  EXPECT_TRUE(absl::StrContains(full.error_message(), "vCPU")) << full.error_message();
  grpc::Status memory = CreateVm(stub(), "fat", IdleConfig(*agent_, 80), false);
  EXPECT_EQ(memory.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << memory.error_message();
  api::HostInfo host;
  ASSERT_TRUE(
      Invoke(stub(), &api::Hearth::Stub::GetHostInfo, api::GetHostInfoRequest(), &host).ok());
  EXPECT_EQ(host.capacity().vcpus(), 3u);
  EXPECT_EQ(host.allocated().vcpus(), 2u);
  EXPECT_EQ(host.allocated().memory_mib(), 32u);
  ASSERT_TRUE(CreateVm(stub(), "fits", IdleConfig(*agent_, 32), false).ok());
}

TEST_F(AgentTest, WatchStreamsChangesAndResumesFromAVersion) {
  api::WatchVmsRequest request;
  request.set_label_selector("watched");
  grpc::ClientContext context;
  auto stream = stub()->WatchVms(&context, request);
  api::WatchEvent event;
  ASSERT_TRUE(stream->Read(&event));
  EXPECT_EQ(event.type(), api::WatchEvent::BOOKMARK) << "no VM yet: only the bookmark";

  ASSERT_TRUE(
      CreateVm(stub(), "seen", IdleConfig(*agent_), true, nullptr, {{"watched", "yes"}}).ok());
  ASSERT_TRUE(CreateVm(stub(), "unseen", IdleConfig(*agent_), false).ok());
  std::vector<api::WatchEvent> events;
  uint64_t last = 0;
  while (stream->Read(&event)) {
    if (event.type() == api::WatchEvent::BOOKMARK) continue;
    EXPECT_EQ(event.vm().vm_id(), "seen") << "the selector filters";
    EXPECT_GT(event.resource_version(), last) << "versions increase";
    last = event.resource_version();
    events.push_back(event);
    if (event.vm().state() == api::VM_STATE_RUNNING) break;
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().type(), api::WatchEvent::ADDED);
  uint64_t resume_from = events.front().resource_version();
  context.TryCancel();
  while (stream->Read(&event)) {
  }
  (void)stream->Finish();

  // Resume after the ADDED event: the rest arrives again, in order.
  api::WatchVmsRequest resume;
  resume.set_vm_id("seen");
  resume.set_resource_version(resume_from);
  grpc::ClientContext context2;
  auto resumed = stub()->WatchVms(&context2, resume);
  ASSERT_TRUE(resumed->Read(&event));
  EXPECT_EQ(event.type(), api::WatchEvent::MODIFIED);
  EXPECT_EQ(event.resource_version(), events[1].resource_version());
  ASSERT_TRUE(DeleteVm(stub(), "seen", true).ok());
  bool deleted = false;
  while (resumed->Read(&event)) {
    if (event.type() == api::WatchEvent::DELETED) {
      deleted = true;
      break;
    }
  }
  EXPECT_TRUE(deleted);
  context2.TryCancel();
  while (resumed->Read(&event)) {
  }
  (void)resumed->Finish();

  api::WatchVmsRequest future;
  future.set_resource_version(1u << 30);
  grpc::ClientContext context3;
  auto refused = stub()->WatchVms(&context3, future);
  EXPECT_FALSE(refused->Read(&event));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

// Snapshots through the API: a running guest paused and snapshotted, its VM
// deleted, the snapshot loaded into a new VM (the guest goes on from its
// count) and cloned three times with a disk of their own each.
TEST_F(AgentTest, SnapshotLoadAndCloneThroughTheApi) {
  std::string disk = agent_->images() + "/disk.img";
  ASSERT_TRUE(WriteFile(disk, std::string(2 << 20, '\0')).ok());
  api::VmConfig config = IdleConfig(*agent_);
  config.mutable_boot_source()->set_boot_args(
      "console=ttyS0 hearth.test=counter hearth.tick_ms=50");
  api::Drive* drive = config.add_drives();
  drive->set_drive_id("data");
  drive->set_path_on_host(disk);
  ASSERT_TRUE(CreateVm(stub(), "origin", config, true).ok());
  uint64_t count;
  {
    Console console(stub(), "origin", true);
    ASSERT_TRUE(console.WaitFor("counter: n=3 blk=ok")) << console.text();
    ASSERT_TRUE(PatchVm(stub(), "origin", "Paused").ok());
    absl::SleepFor(absl::Milliseconds(200));
    count = 0;
    for (absl::string_view line : absl::StrSplit(console.text(), '\n')) {
      uint64_t n;
      if (absl::ConsumePrefix(&line, "counter: n=") &&
          absl::SimpleAtoi(line.substr(0, line.find(' ')), &n)) {
        count = std::max(count, n);
      }
    }
  }
  api::CreateSnapshotRequest create;
  create.set_vm_id("origin");
  create.mutable_params()->set_snapshot_path(agent_->images() + "/origin.state");
  create.mutable_params()->set_mem_file_path(agent_->images() + "/origin.memory");
  grpc::Status created = Invoke(stub(), &api::Hearth::Stub::CreateSnapshot, create);
  ASSERT_TRUE(created.ok()) << created.error_message();
  create.mutable_params()->set_snapshot_type("Diff");
  EXPECT_EQ(Invoke(stub(), &api::Hearth::Stub::CreateSnapshot, create).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "Diff without dirty page tracking";
  ASSERT_TRUE(DeleteVm(stub(), "origin", true).ok());

  // Load into a new VM.
  ASSERT_TRUE(CreateVm(stub(), "restored", api::VmConfig(), false).ok());
  api::LoadSnapshotRequest load;
  load.set_vm_id("restored");
  load.mutable_params()->set_snapshot_path(agent_->images() + "/origin.state");
  load.mutable_params()->mutable_mem_backend()->set_backend_type("Uffd");
  load.mutable_params()->mutable_mem_backend()->set_backend_path("/nonexistent");
  EXPECT_EQ(Invoke(stub(), &api::Hearth::Stub::LoadSnapshot, load).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  load.mutable_params()->mutable_mem_backend()->set_backend_type("File");
  load.mutable_params()->mutable_mem_backend()->set_backend_path(agent_->images() +
                                                                 "/origin.state");
  grpc::Status mismatched = Invoke(stub(), &api::Hearth::Stub::LoadSnapshot, load);
  EXPECT_EQ(mismatched.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << mismatched.error_message();
  EXPECT_EQ(GetVm(stub(), "restored").state(), api::VM_STATE_CONFIGURING)
      << "a refused load leaves the VM as it was";
  load.mutable_params()->mutable_mem_backend()->set_backend_path(agent_->images() +
                                                                 "/origin.memory");
  load.mutable_params()->set_resume_vm(true);
  Console restored_console(stub(), "restored", true);
  api::LoadSnapshotResponse loaded;
  grpc::Status load_status = Invoke(stub(), &api::Hearth::Stub::LoadSnapshot, load, &loaded);
  ASSERT_TRUE(load_status.ok()) << load_status.error_message();
  EXPECT_EQ(loaded.vm().state(), api::VM_STATE_RUNNING);
  EXPECT_EQ(loaded.vm().spec().drives(0).path_on_host(), disk);
  ASSERT_TRUE(restored_console.WaitFor(absl::StrCat("counter: n=", count + 2, " blk=ok")))
      << restored_console.text();
  EXPECT_FALSE(absl::StrContains(restored_console.text(), "counter: boot"));
  EXPECT_EQ(Invoke(stub(), &api::Hearth::Stub::LoadSnapshot, load).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "loading into a running VM";
  ASSERT_TRUE(DeleteVm(stub(), "restored", true).ok());

  // Clones, each with its own copy of the disk.
  api::CloneVmRequest clone;
  clone.set_snapshot_path(agent_->images() + "/origin.state");
  clone.mutable_mem_backend()->set_backend_type("File");
  clone.mutable_mem_backend()->set_backend_path(agent_->images() + "/origin.memory");
  absl::StatusOr<std::string> image = ReadFile(disk);
  ASSERT_TRUE(image.ok());
  for (int i = 0; i < 3; ++i) {
    std::string copy = agent_->images() + absl::StrCat("/clone", i, ".img");
    ASSERT_TRUE(WriteFile(copy, *image).ok());
    api::CloneSpec* spec = clone.add_clones();
    spec->set_vm_id(absl::StrCat("clone-", i));
    (*spec->mutable_labels())["clone"] = "yes";
    spec->set_resume_vm(true);
    api::DriveOverride* o = spec->add_drive_overrides();
    o->set_drive_id("data");
    o->set_path_on_host(copy);
  }
  api::CloneVmResponse clones;
  grpc::Status cloned = Invoke(stub(), &api::Hearth::Stub::CloneVm, clone, &clones);
  ASSERT_TRUE(cloned.ok()) << cloned.error_message();
  ASSERT_EQ(clones.vms_size(), 3);
  api::CloneVmResponse again;
  ASSERT_TRUE(Invoke(stub(), &api::Hearth::Stub::CloneVm, clone, &again).ok()) << "idempotent";
  EXPECT_EQ(again.vms(0).status().vmm_pid(), clones.vms(0).status().vmm_pid());
  for (int i = 0; i < 3; ++i) {
    std::string id = absl::StrCat("clone-", i);
    EXPECT_EQ(GetVm(stub(), id).state(), api::VM_STATE_RUNNING);
    Console console(stub(), id, true);
    console.Send(absl::StrCat("hello ", id, "\n"));
    ASSERT_TRUE(console.WaitFor(absl::StrCat("counter: echo hello ", id))) << console.text();
    ASSERT_TRUE(console.WaitFor("blk=ok")) << console.text();
  }
  api::CloneVmRequest conflicting = clone;
  conflicting.mutable_clones(0)->set_resume_vm(false);
  EXPECT_EQ(Invoke(stub(), &api::Hearth::Stub::CloneVm, conflicting).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  // All or nothing: a clone naming a drive the snapshot lacks fails them all.
  api::CloneVmRequest broken = clone;
  for (int i = 0; i < 3; ++i) broken.mutable_clones(i)->set_vm_id(absl::StrCat("broken-", i));
  broken.mutable_clones(2)->mutable_drive_overrides(0)->set_drive_id("nope");
  grpc::Status refused = Invoke(stub(), &api::Hearth::Stub::CloneVm, broken);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "broken-2")) << refused.error_message();
  absl::SleepFor(absl::Milliseconds(500));
  for (int i = 0; i < 3; ++i) {
    api::GetVmRequest get;
    get.set_vm_id(absl::StrCat("broken-", i));
    EXPECT_EQ(Invoke(stub(), &api::Hearth::Stub::GetVm, get).error_code(),
              grpc::StatusCode::NOT_FOUND)
        << "broken-" << i << " was left behind";
  }
}

// A tap in a private network namespace, the agent running there too.
TEST(AgentNetTest, TapIsHandedToTheVmAndLeftInPlace) {
  HEARTH_REQUIRE_KVM();
  HEARTH_REQUIRE_ROOT();
  std::string ns_name = absl::StrCat("hearth-agent-", ::getpid());
  absl::StatusOr<TapNamespace> ns = TapNamespace::Create(ns_name, "tap-e2e0");
  ASSERT_TRUE(ns.ok()) << ns.status();
  AgentOptions options;
  options.prefix = ns->ExecPrefix();
  ScopedTempDir dir("hearth-e2e-");
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(dir.path(), options);
  ASSERT_TRUE(agent.ok()) << agent.status();
  api::Hearth::Stub* stub = (*agent)->stub();
  api::VmConfig config = IdleConfig(**agent);
  api::NetworkInterface* iface = config.add_network_interfaces();
  iface->set_iface_id("eth0");
  iface->set_host_dev_name("tap-e2e0");
  iface->set_guest_mac("06:00:ac:10:00:02");
  ASSERT_TRUE(CreateVm(stub, "net", config, true).ok());
  Console console(stub, "net", true);
  ASSERT_TRUE(console.WaitFor("idle: ready")) << console.text();
  ASSERT_TRUE(Action(stub, "net", "FlushMetrics").ok());
  api::PatchNetworkInterfaceRequest patch;
  patch.set_vm_id("net");
  patch.mutable_network_interface()->set_iface_id("eth0");
  patch.mutable_network_interface()->mutable_rx_rate_limiter()->mutable_bandwidth()->set_size(
      1 << 20);
  patch.mutable_network_interface()
      ->mutable_rx_rate_limiter()
      ->mutable_bandwidth()
      ->set_refill_time(100);
  EXPECT_TRUE(Invoke(stub, &api::Hearth::Stub::PatchNetworkInterface, patch).ok());
  ASSERT_TRUE(DeleteVm(stub, "net", true).ok());
  (*agent)->Stop(SIGTERM);
  absl::StatusOr<ProcessResult> link =
      RunProcess({"/usr/sbin/ip", "-n", ns_name, "link", "show", "tap-e2e0"}, absl::Seconds(10));
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->exit_code, 0) << "the host's tap survives the VM: " << link->err;
}

}  // namespace
}  // namespace hearth::testing
