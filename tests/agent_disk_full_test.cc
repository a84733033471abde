// hearthd with its --state_dir on a 64 KiB tmpfs: a full disk, for real.
// Many creates with start: each one answered OK has its record on disk and
// a running VMM; every other one names the state directory and leaves
// nothing running; no temporary file is left; a restart lists exactly the
// VMs that were answered OK. The VMMs are fake-vmm processes (no KVM).
#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "tests/testing/agent.h"
#include "tests/testing/host.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {
namespace {

namespace api = ::hearth::v1;

TEST(AgentDiskFull, OkOnlyWhenDurableAndNothingLeftOtherwise) {
  if (!IsRoot()) {
    PrintSkipped("mounting a small tmpfs for the state directory needs root");
    GTEST_SKIP();
  }
  ScopedTempDir dir("hearth-full-");
  const std::string state = dir.path() + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0700), 0);
  if (::mount("tmpfs", state.c_str(), "tmpfs", 0, "size=64k,mode=0700") < 0) {
    PrintSkipped(absl::StrCat("cannot mount a tmpfs here: ", std::strerror(errno)));
    GTEST_SKIP();
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{state};
  ASSERT_EQ(::mkdir((dir.path() + "/images").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(dir.path() + "/images/vmlinux", "fake kernel").ok());
  absl::StatusOr<std::string> installed = InstallFakeVmm(dir.path());
  ASSERT_TRUE(installed.ok()) << installed.status();
  const std::string fake_vmm = *installed;
  AgentOptions options;
  options.jail = false;
  options.flags = {absl::StrCat("--vmm=", fake_vmm), "--max_vms=256", "--max_vcpus=256",
                   "--max_memory_mib=100000"};

  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(dir.path(), options);
  ASSERT_TRUE(agent.ok()) << agent.status();
  std::set<std::string> created;
  int refused = 0;
  for (int i = 0; i < 120; ++i) {
    const std::string id = absl::StrCat("vm", i);
    api::CreateVmRequest request;
    request.set_vm_id(id);
    request.set_start(true);
    // Large labels fill the disk sooner.
    for (int k = 0; k < 4; ++k)
      (*request.mutable_labels())[absl::StrCat("k", k)] = std::string(60, 'v');
    request.mutable_config()->mutable_boot_source()->set_kernel_image_path(dir.path() +
                                                                           "/images/vmlinux");
    request.mutable_config()->mutable_machine_config()->set_vcpu_count(1);
    request.mutable_config()->mutable_machine_config()->set_mem_size_mib(32);
    grpc::ClientContext context;
    api::Vm vm;
    grpc::Status status = (*agent)->stub()->CreateVm(&context, request, &vm);
    if (status.ok()) {
      created.insert(id);
      continue;
    }
    ++refused;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), state)) << status.error_message();
  }
  std::printf("disk full: %zu creates answered OK, %d refused\n", created.size(), refused);
  EXPECT_GT(refused, 0) << "64 KiB should not hold 120 records";
  EXPECT_GT(created.size(), 0u);
  // OK means on disk, and running; nothing else runs; no temporary file.
  std::set<std::string> records;
  for (const std::string& name : DirEntries(state + "/vms")) {
    EXPECT_FALSE(absl::EndsWith(name, ".tmp")) << name;
    if (absl::EndsWith(name, ".rec")) records.insert(name.substr(0, name.size() - 4));
  }
  EXPECT_EQ(records, created);
  EXPECT_EQ(ProcessesOf(fake_vmm).size(), created.size());

  // A restart lists exactly those, all running.
  (*agent)->Stop(SIGKILL);
  agent = Agent::Start(dir.path(), options);
  ASSERT_TRUE(agent.ok()) << agent.status();
  grpc::ClientContext context;
  api::ListVmsRequest list_request;
  list_request.set_page_size(1000);
  api::ListVmsResponse list;
  ASSERT_TRUE((*agent)->stub()->ListVms(&context, list_request, &list).ok());
  std::set<std::string> listed;
  for (const api::Vm& vm : list.vms()) {
    listed.insert(vm.vm_id());
    EXPECT_NE(vm.state(), api::VM_STATE_FAILED) << vm.vm_id() << ": " << vm.status().reason();
  }
  EXPECT_EQ(listed, created);
  for (const std::string& id : created) {
    grpc::ClientContext delete_context;
    api::DeleteVmRequest request;
    request.set_vm_id(id);
    request.set_force(true);
    api::DeleteVmResponse response;
    EXPECT_TRUE((*agent)->stub()->DeleteVm(&delete_context, request, &response).ok()) << id;
  }
  EXPECT_TRUE(ProcessesOf(fake_vmm).empty());
  (*agent)->Stop(SIGTERM);
}

}  // namespace
}  // namespace hearth::testing
