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

// Checks how a VMM running the Linux guest ended, after its console showed
// `init_line` ("Run /init as init process"). On a hardware-KVM host the
// guest's init reboots it, so the VMM must exit 0. On a PVM host user space
// cannot run: the kernel usually panics ("Attempted to kill init") and
// panic=1 resets it through the i8042 (exit 0), but PVM's instruction
// emulator sometimes fails on the x87 `fwait` in fpu__drop() that exec'ing
// init runs, which ends the VM with KVM_EXIT_INTERNAL_ERROR at a kernel
// address. Both happen after the last point a PVM host can verify, so there
// either is accepted (the second with a printed line saying so); any other
// ending is a test failure.
void ExpectLinuxEnded(KvmKind kind, const ProcessResult& result, const std::string& init_line);

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_LINUX_GUEST_H_
