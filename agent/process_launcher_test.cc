#include "agent/process_launcher.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
namespace state = ::hearth::agent::v1;

TEST(CgroupSettings, FromTheSpec) {
  api::VmConfig spec;
  spec.mutable_machine_config()->set_vcpu_count(2);
  spec.mutable_machine_config()->set_mem_size_mib(256);
  auto v2 = CgroupSettings(spec, 2, 64);
  ASSERT_EQ(v2.size(), 3u);
  EXPECT_EQ(v2[0], std::make_pair(std::string("memory.max"), std::string("335544320")));
  EXPECT_EQ(v2[1].second, "200000 100000");
  EXPECT_EQ(v2[2].second, "68");
  auto v1 = CgroupSettings(spec, 1, 0);
  EXPECT_EQ(v1[0], std::make_pair(std::string("memory.limit_in_bytes"), std::string("268435456")));
  EXPECT_EQ(v1[2].second, "200000");
}

TEST(ProcessStartTime, OfThisProcessAndOfNone) {
  EXPECT_GT(ProcessStartTime(::getpid()), 0u);
  EXPECT_EQ(ProcessStartTime(0x3fffffff), 0u);
}

// An unjailed launcher whose "VMM" is /bin/true: spawned for real, its run
// directory made, its exit read through the pidfd, everything removed.
TEST(ProcessLauncher, SpawnsReapsAndRemovesAnUnjailedProcess) {
  // Under /tmp: unix socket paths must stay short (Bazel's TEST_TMPDIR is long).
  LauncherOptions options;
  options.vmm_path = "/bin/true";
  options.run_dir = absl::StrCat("/tmp/hearth-launcher-run-", ::getpid());
  absl::StatusOr<std::unique_ptr<ProcessLauncher>> launcher = ProcessLauncher::Create(options);
  ASSERT_TRUE(launcher.ok()) << launcher.status();
  state::VmRecord record;
  record.mutable_vm()->set_vm_id("vm1");
  (*launcher)->Plan(&record, 400000);
  absl::StatusOr<VmmProcess> process = (*launcher)->Spawn(&record);
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_GT(record.pid(), 0);
  EXPECT_EQ(record.uid(), ::geteuid());  // unjailed: the agent's own
  EXPECT_EQ(record.run_dir(), options.run_dir + "/vms/vm1");
  EXPECT_EQ(::access((record.run_dir() + "/control.sock").c_str(), F_OK), 0);
  std::optional<ExitStatus> status = (*launcher)->Reap(*process);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 0);
  // Gone: a re-attach finds nothing, and cleaning up removes its files.
  EXPECT_EQ((*launcher)->Reattach(record).status().code(), absl::StatusCode::kNotFound);
  (*launcher)->Release(record);
  EXPECT_NE(::access((record.run_dir() + "/control.sock").c_str(), F_OK), 0);
  (*launcher)->RemoveRunDir(record);
  EXPECT_NE(::access(record.run_dir().c_str(), F_OK), 0);
  ::rmdir((options.run_dir + "/vms").c_str());
  ::rmdir(options.run_dir.c_str());
}

TEST(ProcessLauncher, SpawnOfAMissingBinaryFails) {
  LauncherOptions options;
  options.vmm_path = "/nonexistent/hearth-vmm";
  options.run_dir = absl::StrCat("/tmp/hearth-launcher-missing-", ::getpid());
  absl::StatusOr<std::unique_ptr<ProcessLauncher>> launcher = ProcessLauncher::Create(options);
  ASSERT_TRUE(launcher.ok());
  state::VmRecord record;
  record.mutable_vm()->set_vm_id("vm1");
  (*launcher)->Plan(&record, 400000);
  absl::StatusOr<VmmProcess> process = (*launcher)->Spawn(&record);
  EXPECT_FALSE(process.ok());
  EXPECT_NE(process.status().message().find("spawning /nonexistent/hearth-vmm"),
            absl::string_view::npos)
      << process.status();
  std::string remove = absl::StrCat("rm -rf '", options.run_dir, "'");
  EXPECT_EQ(std::system(remove.c_str()), 0);
}

}  // namespace
}  // namespace hearth::agent
