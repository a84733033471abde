// hearthd killed with SIGKILL at random instants, restarted, and checked.
//
// Each round starts hearthd over the same state directory, lets it converge,
// checks the invariants, then runs a burst of creates, starts, pauses,
// snapshots, clones and deletes from several clients and SIGKILLs hearthd after a random delay
// (seeded: HEARTH_CRASH_SEED, default 1; HEARTH_CRASH_ROUNDS, default 25).
// The VMMs are fake-vmm processes (the real control protocol, no KVM), so
// this runs on any host; hearthd runs unjailed (cgroup and jail leftovers
// are the jailed agent_e2e_test's to check).
//
// Invariants after every restart: tests/testing/crash_invariants.h's
// (versions, convergence, one VMM per VM and no orphan VMM, no orphan run
// directory), and what hearthd answered before it died is still true (a
// created VM exists, a deleted one does not).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/unique_fd.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "tests/testing/agent.h"
#include "tests/testing/crash_invariants.h"
#include "tests/testing/host.h"
#include "tests/testing/subprocess.h"
#include "vmm/snapshot/format.h"

namespace hearth::testing {
namespace {

namespace api = ::hearth::v1;

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoi(value) : fallback;
}

// What clients were told, per VM id: the last answered operation, and
// whether one was still in flight when hearthd died (then either outcome
// is allowed).
struct Ledger {
  absl::Mutex mutex;
  std::map<std::string, bool> exists ABSL_GUARDED_BY(mutex);  // as last answered OK
  std::set<std::string> in_flight ABSL_GUARDED_BY(mutex);
};

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ShortTempDir("hearth-crash-");
    ASSERT_EQ(::mkdir((dir_ + "/images").c_str(), 0755), 0);
    ASSERT_TRUE(WriteFile(dir_ + "/images/vmlinux", "fake kernel").ok());
    // The snapshot clones are made from: a 1-vCPU, 64 MiB VM.
    vmm::v1::VmSnapshot base;
    base.mutable_config()->mutable_boot_source()->set_kernel_image_path(dir_ + "/images/vmlinux");
    base.mutable_config()->mutable_machine_config()->set_vcpu_count(1);
    base.mutable_config()->mutable_machine_config()->set_mem_size_mib(64);
    UniqueFd state(
        ::open((dir_ + "/images/base.snap").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(state.valid());
    ASSERT_TRUE(snapshot::WriteStateFile(state.get(), base).ok());
    ASSERT_TRUE(WriteFile(dir_ + "/images/base.mem", "").ok());
    absl::StatusOr<std::string> fake_vmm = InstallFakeVmm(dir_);
    ASSERT_TRUE(fake_vmm.ok()) << fake_vmm.status();
    fake_vmm_ = *fake_vmm;
  }
  void TearDown() override {
    for (pid_t pid : ProcessesOf(fake_vmm_)) ::kill(pid, SIGKILL);
    if (HasFailure() || std::getenv("HEARTH_KEEP_TEST_DIRS") != nullptr) {
      std::printf("crash test: kept %s (hearthd.log, state/)\n", dir_.c_str());
      return;
    }
    std::string remove = absl::StrCat("rm -rf '", dir_, "'");
    if (std::system(remove.c_str()) != 0) ADD_FAILURE() << "could not remove " << dir_;
  }

  absl::StatusOr<std::unique_ptr<Agent>> StartAgent() {
    AgentOptions options;
    options.jail = false;
    options.flags = {absl::StrCat("--vmm=", fake_vmm_), "--max_vms=64"};
    return Agent::Start(dir_, options);
  }

  api::ListVmsResponse List(Agent& agent) {
    grpc::ClientContext context;
    api::ListVmsResponse list;
    grpc::Status status = agent.stub()->ListVms(&context, api::ListVmsRequest(), &list);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return list;
  }

  // Waits for STARTING VMs to converge, then checks every invariant.
  void CheckInvariants(Agent& agent, Ledger& ledger, int round) {
    api::ListVmsResponse list;
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (true) {
      list = List(agent);
      bool starting = false;
      for (const api::Vm& vm : list.vms()) starting |= vm.state() == api::VM_STATE_STARTING;
      if (!starting || absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    SCOPED_TRACE(absl::StrCat("round ", round, "; hearthd log: ", agent.log()));
    HostView view{list, ProcessesOf(fake_vmm_), dir_};
    for (const std::unique_ptr<CrashInvariant>& invariant : invariants_) {
      for (const std::string& violation : invariant->Check(view)) {
        ADD_FAILURE() << invariant->name() << ": " << violation;
      }
    }
    std::set<std::string> listed;
    for (const api::Vm& vm : list.vms()) listed.insert(vm.vm_id());
    absl::MutexLock lock(&ledger.mutex);
    for (const auto& [id, exists] : ledger.exists) {
      if (ledger.in_flight.count(id)) continue;
      EXPECT_EQ(listed.count(id) > 0, exists)
          << id << (exists ? " was created (OK) but is gone" : " was deleted (OK) but is back");
    }
  }

  // One client: operations on its own ids, each answered or cut by the kill.
  static void Client(Agent* agent, Ledger* ledger, int client, uint32_t seed,
                     std::atomic<bool>* stop, const std::string& images) {
    const std::string kernel = images + "/vmlinux";
    std::mt19937 rng(seed);
    std::unique_ptr<api::Hearth::Stub> stub = agent->NewStub();
    while (!*stop) {
      const std::string id = absl::StrCat("c", client, "-", rng() % 4);
      const int op = static_cast<int>(rng() % 6);
      {
        absl::MutexLock lock(&ledger->mutex);
        ledger->in_flight.insert(id);
      }
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
      grpc::Status status;
      std::optional<bool> exists;
      if (op <= 1) {
        api::CreateVmRequest request;
        request.set_vm_id(id);
        request.set_start(op == 1);
        request.mutable_config()->mutable_boot_source()->set_kernel_image_path(kernel);
        request.mutable_config()->mutable_machine_config()->set_vcpu_count(1);
        request.mutable_config()->mutable_machine_config()->set_mem_size_mib(64);
        api::Vm vm;
        status = stub->CreateVm(&context, request, &vm);
        if (status.ok()) exists = true;
      } else if (op == 2) {
        api::DeleteVmRequest request;
        request.set_vm_id(id);
        request.set_force(true);
        api::DeleteVmResponse response;
        status = stub->DeleteVm(&context, request, &response);
        if (status.ok()) exists = false;
      } else if (op == 3 || op == 4) {
        api::PatchVmRequest request;
        request.set_vm_id(id);
        request.mutable_vm_state()->set_state(op == 4 || rng() % 2 ? "Paused" : "Resumed");
        api::Vm vm;
        status = stub->PatchVm(&context, request, &vm);
        if (op == 4 && status.ok()) {
          // Paused: a snapshot over the client's previous one.
          grpc::ClientContext snapshot_context;
          snapshot_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
          api::CreateSnapshotRequest snapshot;
          snapshot.set_vm_id(id);
          snapshot.mutable_params()->set_snapshot_path(absl::StrCat(images, "/c", client, ".snap"));
          snapshot.mutable_params()->set_mem_file_path(absl::StrCat(images, "/c", client, ".mem"));
          api::CreateSnapshotResponse made;
          stub->CreateSnapshot(&snapshot_context, snapshot, &made).ok();  // either outcome
        }
      } else {
        api::CloneVmRequest request;
        request.set_snapshot_path(images + "/base.snap");
        request.mutable_mem_backend()->set_backend_type("File");
        request.mutable_mem_backend()->set_backend_path(images + "/base.mem");
        api::CloneSpec* clone = request.add_clones();
        clone->set_vm_id(id);
        clone->set_resume_vm(true);
        api::CloneVmResponse response;
        status = stub->CloneVm(&context, request, &response);
        if (status.ok()) exists = true;
      }
      absl::MutexLock lock(&ledger->mutex);
      // An answer that did not arrive (the agent died) leaves the VM
      // undetermined until a later call answers.
      if (!status.ok() && (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                           status.error_code() == grpc::StatusCode::CANCELLED)) {
        continue;
      }
      // Every answer tells whether the VM exists now: a PatchVm by NOT_FOUND
      // or not (an earlier create cut by the kill may have happened), a
      // create or clone by OK or ALREADY_EXISTS. Their other errors tell
      // nothing.
      if (op == 3 || op == 4) exists = status.error_code() != grpc::StatusCode::NOT_FOUND;
      if ((op <= 1 || op == 5) && status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
        exists = true;
      }
      if (!exists.has_value()) continue;
      ledger->in_flight.erase(id);
      ledger->exists[id] = *exists;
    }
  }

  std::string dir_;
  std::string fake_vmm_;
  std::vector<std::unique_ptr<CrashInvariant>> invariants_ = AgentInvariants();
};

TEST_F(CrashTest, SigkillAtRandomInstantsConverges) {
  const int rounds = EnvInt("HEARTH_CRASH_ROUNDS", 25);
  const uint32_t seed = static_cast<uint32_t>(EnvInt("HEARTH_CRASH_SEED", 1));
  std::printf("crash test: %d rounds, seed %u\n", rounds, seed);
  std::mt19937 rng(seed);
  Ledger ledger;
  for (int round = 0; round < rounds; ++round) {
    absl::StatusOr<std::unique_ptr<Agent>> agent = StartAgent();
    ASSERT_TRUE(agent.ok()) << agent.status();
    CheckInvariants(**agent, ledger, round);
    if (HasFailure()) return;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 4; ++c) {
      clients.emplace_back(Client, agent->get(), &ledger, c, static_cast<uint32_t>(rng()), &stop,
                           dir_ + "/images");
    }
    absl::SleepFor(absl::Milliseconds(static_cast<int64_t>(rng() % 400)));
    (*agent)->Stop(SIGKILL);
    stop = true;
    for (std::thread& t : clients) t.join();
  }
  // A last agent: everything converges, then everything is deleted and
  // nothing of it remains.
  absl::StatusOr<std::unique_ptr<Agent>> agent = StartAgent();
  ASSERT_TRUE(agent.ok()) << agent.status();
  CheckInvariants(**agent, ledger, rounds);
  const api::ListVmsResponse remaining = List(**agent);
  for (const api::Vm& vm : remaining.vms()) {
    grpc::ClientContext context;
    api::DeleteVmRequest request;
    request.set_vm_id(vm.vm_id());
    request.set_force(true);
    api::DeleteVmResponse response;
    EXPECT_TRUE((*agent)->stub()->DeleteVm(&context, request, &response).ok()) << vm.vm_id();
  }
  EXPECT_EQ(List(**agent).vms_size(), 0);
  EXPECT_TRUE(ProcessesOf(fake_vmm_).empty());
  EXPECT_TRUE(DirEntries(dir_ + "/run/vms").empty());
  EXPECT_TRUE(DirEntries(dir_ + "/state/vms").empty());
  // A snapshot cut by a kill leaves temporary files until the next one to
  // its path: at most one pair per client's path.
  int temporaries = 0;
  for (const std::string& name : DirEntries(dir_ + "/images")) {
    temporaries += name.find(".hearth-tmp-") != std::string::npos;
  }
  EXPECT_LE(temporaries, 8);
  // A clean stop writes the metrics file, readable by owner and group only.
  EXPECT_EQ(WEXITSTATUS((*agent)->Stop(SIGTERM)), 0);
  struct stat metrics;
  ASSERT_EQ(::stat((dir_ + "/run/metrics.json").c_str(), &metrics), 0);
  EXPECT_EQ(metrics.st_mode & 0777, 0640u);
}

}  // namespace
}  // namespace hearth::testing
