// Run by hearth-jailer in place of the VMM (tests/jailer_test.cc): tries to
// get out of the jail and reports each attempt. Every attempt must fail.
// Prints "ESCAPE-BLOCKED <what> errno=<n>" or "ESCAPE-POSSIBLE <what>", and
// the process's identity.
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace {

int failures = 0;

void Expect(const char* what, int rc) {
  if (rc < 0) {
    std::printf("ESCAPE-BLOCKED %s errno=%d\n", what, errno);
  } else {
    std::printf("ESCAPE-POSSIBLE %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  std::printf("PROBE uid=%d gid=%d\n", ::getuid(), ::getgid());
  Expect("open /etc/passwd", ::open("/etc/passwd", O_RDONLY));
  Expect("open /proc/self/status", ::open("/proc/self/status", O_RDONLY));
  Expect("open /dev/kvm by path", ::open("/dev/kvm", O_RDWR));
  Expect("create a file in /", ::open("/escape", O_CREAT | O_WRONLY, 0644));
  Expect("mkdir in /", ::mkdir("/escape-dir", 0755));
  Expect("mount tmpfs", ::mount("none", "/", "tmpfs", 0, nullptr));
  Expect("ptrace pid 1", static_cast<int>(::ptrace(PTRACE_ATTACH, 1, nullptr, nullptr)));
  Expect("setuid(0)", ::setuid(0));
  Expect("setgid(0)", ::setgid(0));
  Expect("chroot(\"..\")", ::chroot(".."));
  // chdir("..") in a chroot stays at the jail root: still nothing to open.
  (void)!::chdir("../../..");
  Expect("open ../../../etc/passwd", ::open("etc/passwd", O_RDONLY));
  std::printf("PROBE-DONE failures=%d\n", failures);
  return failures == 0 ? 0 : 1;
}
