#include "tests/testing/host.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace hearth::testing {
namespace {
bool Exists(const char* path) {
  struct stat st;
  return ::stat(path, &st) == 0;
}
}  // namespace

KvmKind DetectKvm() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return KvmKind::kNone;
  ::close(fd);
  if (Exists("/sys/module/kvm_pvm")) return KvmKind::kPvm;
  if (Exists("/sys/module/kvm_intel") || Exists("/sys/module/kvm_amd")) {
    return KvmKind::kHardware;
  }
  return KvmKind::kUnknown;
}

const char* KvmKindName(KvmKind kind) {
  switch (kind) {
    case KvmKind::kNone:
      return "none";
    case KvmKind::kHardware:
      return "hardware";
    case KvmKind::kPvm:
      return "pvm";
    case KvmKind::kUnknown:
      return "unknown";
  }
  return "unknown";
}

bool IsRoot() { return ::geteuid() == 0; }

bool IsAsanBuild() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#else
  return false;
#endif
}

void PrintSkipped(const std::string& reason) {
  std::fprintf(stdout, "SKIPPED: %s\n", reason.c_str());
  std::fprintf(stderr, "SKIPPED: %s\n", reason.c_str());
  std::fflush(stdout);
}

}  // namespace hearth::testing
