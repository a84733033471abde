// Boots the minimal Linux guest (tools/guest/build-linux) with hearth-vmm.
//
// On a hardware-KVM host the kernel must reach user space: the initramfs's
// /init prints HEARTH-LINUX-INIT-OK and reboots, and the VMM exits 0.
// On a PVM host (software-nested KVM, see ENVIRONMENT.md) Linux user space
// cannot run: the kernel is checked up to "Run /init", which proves the
// e820 map, the command line, the serial console, the MP table, the timer
// and the i8042 reboot path; the first system call from /init then faults
// and panic=1 reboots, so the VMM still exits 0.
//
// Needs HEARTH_LINUX_GUEST (set by tools/test) pointing at the images.
#include <cstdlib>
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

using testing::KvmKind;
using testing::ProcessResult;

class LinuxBootTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(LinuxBootTest, ReachesInit) {
  HEARTH_REQUIRE_KVM();
  std::optional<testing::LinuxGuest> guest = testing::FindLinuxGuest();
  if (!guest.has_value()) GTEST_SKIP();
  const auto& [kernel_name, vcpus] = GetParam();
  KvmKind kind = testing::DetectKvm();
  std::string kernel = absl::StrCat(guest->dir, "/", kernel_name);
  std::string config = absl::StrCat(
      R"({"boot-source": {"kernel_image_path": ")", kernel, R"(", "initrd_path": ")", guest->dir,
      R"(/initramfs.cpio.gz", "boot_args": ")", testing::LinuxBootArgs(kind),
      R"("}, "machine-config": {"vcpu_count": )", vcpus, R"(, "mem_size_mib": 128}})");
  ProcessResult r = testing::RunVmm(config, absl::Minutes(6));
  std::printf("[%s, %d vCPU] host %s: %s in %s\n", kernel_name.c_str(), vcpus,
              testing::KvmKindName(kind), r.Describe().c_str(),
              absl::FormatDuration(r.elapsed).c_str());
  std::printf("--- last console lines ---\n%s\n",
              r.out.substr(r.out.size() > 1500 ? r.out.size() - 1500 : 0).c_str());
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "Linux version 6.1")) << r.out;
  EXPECT_TRUE(
      absl::StrContains(r.out, "BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "Command line: console=ttyS0")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "serial8250: ttyS0 at I/O 0x3f8 (irq = 4")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "Intel MultiProcessor Specification v1.4")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("Brought up 1 node, ", vcpus, " CPU")))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "Run /init as init process")) << r.out;
  if (kind == KvmKind::kHardware) {
    EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-LINUX-INIT-OK")) << r.out;
  } else {
    std::printf(
        "PVM host: user space cannot run here; checked the kernel up to "
        "'Run /init'\n");
  }
  testing::ExpectLinuxEnded(kind, r, "Run /init as init process");
}

INSTANTIATE_TEST_SUITE_P(Kernels, LinuxBootTest,
                         ::testing::Values(std::make_tuple("vmlinux", 1),
                                           std::make_tuple("vmlinux", 2)),
                         [](const auto& info) {
                           return absl::StrCat(std::get<0>(info.param), "_",
                                               std::get<1>(info.param), "vcpu");
                         });

}  // namespace
}  // namespace hearth
