// Boots Hearth's freestanding test guest with the real hearth-vmm on the
// real /dev/kvm, once per scenario and vCPU count, and checks the guest's
// verdict line (HEARTH-TEST-PASS <name>) — never just the exit code, since
// a guest that panics also ends in a clean reset.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/linux_guest.h"
#include "tests/testing/subprocess.h"

namespace hearth {
namespace {

using testing::ProcessResult;

constexpr char kGuest[] = "tests/guest/guest.elf";

std::string Config(const std::string& kernel, const std::string& boot_args, int vcpus,
                   int mem_mib) {
  return absl::StrCat(R"({"boot-source": {"kernel_image_path": ")", kernel, R"(", "boot_args": ")",
                      boot_args, R"("}, "machine-config": {"vcpu_count": )", vcpus,
                      R"(, "mem_size_mib": )", mem_mib, "}}");
}

ProcessResult Boot(const std::string& config_json) {
  return testing::RunVmm(config_json, absl::Seconds(120));
}

struct Scenario {
  std::string name;
  std::string extra_args;
};

class GuestScenarioTest : public ::testing::TestWithParam<std::tuple<Scenario, int>> {};

TEST_P(GuestScenarioTest, PrintsPassAndExitsCleanly) {
  HEARTH_REQUIRE_KVM();
  const auto& [scenario, vcpus] = GetParam();
  std::string args =
      absl::StrCat("console=ttyS0 hearth.test=", scenario.name, " ", scenario.extra_args);
  if (scenario.name == "smp") absl::StrAppend(&args, " hearth.expect_cpus=", vcpus);
  ProcessResult r = Boot(Config(kGuest, args, vcpus, 128));
  std::printf("[%s, %d vCPU, host %s] %s in %s\n%s", scenario.name.c_str(), vcpus,
              testing::KvmKindName(testing::DetectKvm()), r.Describe().c_str(),
              absl::FormatDuration(r.elapsed).c_str(), r.err.c_str());
  EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-TEST-PASS " + scenario.name))
      << "stdout:\n"
      << r.out << "\nstderr:\n"
      << r.err;
  EXPECT_FALSE(absl::StrContains(r.out, "HEARTH-TEST-FAIL")) << r.out;
  EXPECT_EQ(r.exit_code, 0) << r.Describe() << "\n" << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "boot-timer: vm_ready_us=")) << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, GuestScenarioTest,
    ::testing::Combine(
        ::testing::Values(Scenario{"serial", ""},
                          Scenario{"boot_info", "hearth.expect_mem_mib=128 hearth.echo=hello"},
                          Scenario{"smp", ""}, Scenario{"cpu_loop", "hearth.iterations=1000000"},
                          Scenario{"timer", ""}, Scenario{"serial_irq", ""}, Scenario{"reset", ""}),
        ::testing::Values(1, 2)),
    [](const auto& info) {
      return absl::StrCat(std::get<0>(info.param).name, "_", std::get<1>(info.param), "vcpu");
    });

TEST(VmmBoot, SerialOutputArrivesInOrder) {
  HEARTH_REQUIRE_KVM();
  ProcessResult r = Boot(Config(kGuest, "console=ttyS0 hearth.test=serial", 1, 64));
  size_t one = r.out.find("hearth serial line 1");
  size_t three = r.out.find("hearth serial line 3");
  ASSERT_NE(one, std::string::npos) << r.out;
  ASSERT_NE(three, std::string::npos) << r.out;
  EXPECT_LT(one, three);
}

TEST(VmmBoot, DeliberateGuestFailureIsVisibleDespiteCleanExit) {
  HEARTH_REQUIRE_KVM();
  ProcessResult r = Boot(Config(kGuest, "console=ttyS0 hearth.test=panic", 1, 64));
  // The guest resets cleanly (exit 0), but its verdict is FAIL: tests must
  // read the marker.
  EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-TEST-FAIL panic")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "HEARTH-TEST-PASS")) << r.out;
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A guest that executes an invalid instruction with no handler, or faults
// with no IDT, must make the VMM exit non-zero and say why.
class GuestCrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GuestCrashTest, VmmExitsNonZeroWithReason) {
  HEARTH_REQUIRE_KVM();
  ProcessResult r = Boot(Config(kGuest, "console=ttyS0 hearth.test=" + GetParam(), 1, 64));
  std::printf("[%s, host %s] %s: %s", GetParam().c_str(),
              testing::KvmKindName(testing::DetectKvm()), r.Describe().c_str(), r.err.c_str());
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(absl::StrContains(r.out, "HEARTH-TEST-PASS"));
  // Hardware KVM reports a triple fault (KVM_EXIT_SHUTDOWN); PVM's
  // instruction emulator may report an emulation failure instead. Either
  // way the line names the exit and the guest's RIP.
  EXPECT_TRUE(absl::StrContains(r.err, "hearth-vmm: guest triple-fault") ||
              absl::StrContains(r.err, "hearth-vmm: guest error"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "rip=0x")) << r.err;
}

INSTANTIATE_TEST_SUITE_P(Crashes, GuestCrashTest, ::testing::Values("ud2", "triple_fault"));

TEST(VmmBoot, ConfigErrorsAreOneLineAndNameTheField) {
  struct Case {
    std::string json;
    std::string expected;
  };
  std::vector<Case> cases = {
      {R"({"boot-source": {"kernel_image_path": "/nonexistent/vmlinux"}})",
       "boot_source.kernel_image_path: open /nonexistent/vmlinux"},
      {Config(kGuest, "x", 0, 64), "machine_config.vcpu_count: must be 1..32, got 0"},
      {R"({"boot-source": {"kernel_image_path": "k"}, "bogus-key": 1})", "bogus-key"},
      {R"({"boot-source": {"kernel_image_path": "k"}, "machine-config": {"vcpu_count": "two"}})",
       "machine_config.vcpu_count"},
      {R"({"boot-source": {"kernel_image_path": "k"}, "drives": [{"drive_id": "d", "path_on_host": "/x", "io_engine": "Fast"}]})",
       "drives[0].io_engine"},
      {R"({"machine-config": {"vcpu_count": 1}})", "boot_source.kernel_image_path: is required"},
      {"not json", "config:"},
  };
  for (const Case& c : cases) {
    ProcessResult r = Boot(c.json);
    EXPECT_EQ(r.exit_code, 1) << c.json;
    EXPECT_TRUE(absl::StrContains(r.err, c.expected)) << "expected \"" << c.expected << "\" in:\n"
                                                      << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "hearth-vmm: error: ")) << r.err;
  }
}

TEST(VmmBoot, UnreadableOrBogusKernelIsRefused) {
  // The kernel is read into guest memory, which exists only once KVM does.
  HEARTH_REQUIRE_KVM();
  std::string dir = testing::MakeTempDir("vmm-kernel-");
  ASSERT_TRUE(testing::WriteFile(dir + "/junk", std::string(4096, 'j')).ok());
  ProcessResult r = Boot(Config(dir + "/junk", "x", 1, 64));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "kernel: neither an ELF file nor a bzImage")) << r.err;
}

}  // namespace
}  // namespace hearth
