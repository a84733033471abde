// ExpectLinuxEnded accepts a clean exit everywhere, the PVM emulator's
// failure only on PVM and only after init was started, and nothing else.
#include "tests/testing/linux_guest.h"

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace hearth::testing {
namespace {

constexpr char kInit[] = "Run /init as init process";
constexpr char kEmulationFailure[] =
    "hearth-vmm: guest error: KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure) "
    "on vCPU 0 at rip=0xffffffff81016dfb\n";

ProcessResult Exited(int code, const std::string& out, const std::string& err) {
  ProcessResult r;
  r.exit_code = code;
  r.out = out;
  r.err = err;
  return r;
}

TEST(ExpectLinuxEnded, CleanResetPassesOnBothKinds) {
  ExpectLinuxEnded(KvmKind::kHardware, Exited(0, kInit, ""), kInit);
  ExpectLinuxEnded(KvmKind::kPvm, Exited(0, kInit, ""), kInit);
}

TEST(ExpectLinuxEnded, EmulationFailureAfterInitPassesOnlyOnPvm) {
  ExpectLinuxEnded(KvmKind::kPvm, Exited(1, kInit, kEmulationFailure), kInit);
  EXPECT_NONFATAL_FAILURE(
      ExpectLinuxEnded(KvmKind::kHardware, Exited(1, kInit, kEmulationFailure), kInit), "exit 0");
}

TEST(ExpectLinuxEnded, EmulationFailureBeforeInitFails) {
  EXPECT_NONFATAL_FAILURE(
      ExpectLinuxEnded(KvmKind::kPvm, Exited(1, "Linux version 6.1", kEmulationFailure), kInit),
      "accepted PVM endings");
}

TEST(ExpectLinuxEnded, OtherFailuresFailOnPvm) {
  EXPECT_NONFATAL_FAILURE(
      ExpectLinuxEnded(KvmKind::kPvm,
                       Exited(1, kInit, "hearth-vmm: guest error: KVM_EXIT_SHUTDOWN\n"), kInit),
      "accepted PVM endings");
  EXPECT_NONFATAL_FAILURE(
      ExpectLinuxEnded(KvmKind::kPvm,
                       Exited(1, kInit,
                              "hearth-vmm: guest error: KVM_EXIT_INTERNAL_ERROR suberror 1 "
                              "(emulation failure) on vCPU 0 at rip=0x1000\n"),
                       kInit),
      "accepted PVM endings");
  ProcessResult killed;
  killed.signaled = true;
  killed.signal = 11;
  killed.out = kInit;
  EXPECT_NONFATAL_FAILURE(ExpectLinuxEnded(KvmKind::kPvm, killed, kInit), "exit 0");
  ProcessResult timed_out = Exited(0, kInit, "");
  timed_out.timed_out = true;
  EXPECT_NONFATAL_FAILURE(ExpectLinuxEnded(KvmKind::kPvm, timed_out, kInit), "timed_out");
}

}  // namespace
}  // namespace hearth::testing
