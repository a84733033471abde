// The minimal Linux guest built by tools/guest/build-linux, and how to boot
// it with hearth-vmm from a test.
#ifndef HEARTH_TESTS_TESTING_LINUX_GUEST_H_
#define HEARTH_TESTS_TESTING_LINUX_GUEST_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tests/testing/host.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {

struct LinuxGuest {
  std::string dir;  // vmlinux, bzImage, initramfs.cpio.gz, rootfs.ext4
};

// From $HEARTH_LINUX_GUEST; prints a SKIPPED line and returns nothing if the
// images are not there.
std::optional<LinuxGuest> FindLinuxGuest();

// The kernel command line for this kind of host. On PVM hosts Linux needs
// the workarounds listed in ENVIRONMENT.md (no XSAVE, no kvmclock, CPU
// features PVM's emulator lacks masked); hardware hosts get a plain line.
std::string LinuxBootArgs(KvmKind kind, const std::string& extra = "");

// Writes `config_json` to a temporary file and runs hearth-vmm on it (with
// --boot_timer, and `extra_flags`).
ProcessResult RunVmm(const std::string& config_json, absl::Duration timeout,
                     const std::vector<std::string>& extra_flags = {});

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_LINUX_GUEST_H_
