#include "tests/testing/linux_guest.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/vmm_process.h"

namespace hearth::testing {

std::optional<LinuxGuest> FindLinuxGuest() {
  const char* dir = std::getenv("HEARTH_LINUX_GUEST");
  if (dir == nullptr || *dir == '\0') {
    PrintSkipped(
        "HEARTH_LINUX_GUEST is not set (tools/test sets it after "
        "tools/guest/build-linux)");
    return std::nullopt;
  }
  for (const char* file : {"vmlinux", "bzImage", "initramfs.cpio.gz", "rootfs.ext4"}) {
    struct stat st;
    std::string path = absl::StrCat(dir, "/", file);
    if (::stat(path.c_str(), &st) != 0) {
      PrintSkipped(absl::StrCat(path, " is missing (run tools/guest/build-linux)"));
      return std::nullopt;
    }
  }
  return LinuxGuest{dir};
}

std::string LinuxBootArgs(KvmKind kind, const std::string& extra) {
  std::string args = "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux";
  if (kind == KvmKind::kPvm) {
    absl::StrAppend(&args,
                    " noxsave no-kvmclock clocksource=tsc i8042.nokbd "
                    "clearcpuid=popcnt,movbe,abm,bmi1,bmi2,avx,avx2,avx512f,fma,"
                    "f16c,xsave,pcid,invpcid,smap,smep,erms,fsrm,rdrand,rdseed,"
                    "rdpid,cx16");
  }
  if (!extra.empty()) absl::StrAppend(&args, " ", extra);
  return args;
}

ProcessResult RunVmm(const std::string& config_json, absl::Duration timeout,
                     const std::vector<std::string>& extra_flags) {
  std::vector<std::string> flags = {"--boot_timer"};
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  absl::StatusOr<BackgroundProcess> vmm = StartVmm(config_json, {}, flags);
  return vmm.ok() ? vmm->Wait(timeout) : ProcessResult();
}

void ExpectLinuxEnded(KvmKind kind, const ProcessResult& result, const std::string& init_line) {
  EXPECT_FALSE(result.timed_out) << result.err;
  if (result.signaled || result.exit_code == 0 || kind != KvmKind::kPvm) {
    EXPECT_EQ(result.Describe(), "exit 0") << result.err;
    return;
  }
  // PVM only: an emulation failure in kernel text after init was started.
  const bool after_init = absl::StrContains(result.out, init_line);
  const bool emulation_failure =
      absl::StrContains(result.err, "KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)");
  const bool in_kernel = absl::StrContains(result.err, "at rip=0xffffffff8");
  EXPECT_TRUE(after_init && emulation_failure && in_kernel)
      << "PVM host: the VMM ended with " << result.Describe()
      << " other than the accepted PVM endings:\n"
      << result.err;
  if (after_init && emulation_failure && in_kernel) {
    std::printf(
        "PVM host: the kernel ended in an emulation failure after '%s' "
        "(PVM's emulator, not the VMM; see docs/testing.md): %s",
        init_line.c_str(), result.err.c_str());
  }
}

}  // namespace hearth::testing
