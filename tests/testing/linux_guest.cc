#include "tests/testing/linux_guest.h"

#include <sys/stat.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace hearth::testing {

std::optional<LinuxGuest> FindLinuxGuest() {
  const char* dir = std::getenv("HEARTH_LINUX_GUEST");
  if (dir == nullptr || *dir == '\0') {
    PrintSkipped("HEARTH_LINUX_GUEST is not set (tools/test sets it after "
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
  std::string dir = MakeTempDir("vmm-");
  std::string path = dir + "/vm.json";
  if (!WriteFile(path, config_json).ok()) return ProcessResult();
  std::vector<std::string> argv = {"vmm/hearth-vmm", "--config=" + path,
                                   "--boot_timer"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  absl::StatusOr<ProcessResult> result = RunProcess(argv, timeout);
  return result.ok() ? *result : ProcessResult();
}

}  // namespace hearth::testing
