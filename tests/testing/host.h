// What kind of host a test runs on, so that tests that need /dev/kvm or
// root can skip loudly where those are genuinely missing, and tests that
// boot Linux know whether user space can run (hardware KVM) or only the
// kernel up to /init (PVM, software-nested KVM; see ENVIRONMENT.md).
#ifndef HEARTH_TESTS_TESTING_HOST_H_
#define HEARTH_TESTS_TESTING_HOST_H_

#include <string>

namespace hearth::testing {

enum class KvmKind { kNone, kHardware, kPvm, kUnknown };

KvmKind DetectKvm();
const char* KvmKindName(KvmKind kind);
bool IsRoot();
// True when built with --config=asan (static binaries, jails and seccomp
// are off there).
bool IsAsanBuild();

// Prints "SKIPPED: <reason>" so that a skip is visible in test logs.
void PrintSkipped(const std::string& reason);

}  // namespace hearth::testing

// Skips the current GoogleTest test with a visible line unless /dev/kvm can
// be opened.
#define HEARTH_REQUIRE_KVM()                                                   \
  do {                                                                         \
    if (::hearth::testing::DetectKvm() == ::hearth::testing::KvmKind::kNone) { \
      ::hearth::testing::PrintSkipped("/dev/kvm is not available");            \
      GTEST_SKIP() << "/dev/kvm is not available";                             \
    }                                                                          \
  } while (false)

#define HEARTH_REQUIRE_ROOT()                        \
  do {                                               \
    if (!::hearth::testing::IsRoot()) {              \
      ::hearth::testing::PrintSkipped("needs root"); \
      GTEST_SKIP() << "needs root";                  \
    }                                                \
  } while (false)

#endif  // HEARTH_TESTS_TESTING_HOST_H_
