// A tiny static /init for Hearth's minimal Linux guest: no libc, raw
// system calls, so the initramfs stays a few kilobytes (decompressing a
// busybox initramfs costs tens of seconds where guest CPL0 code is
// emulated). Built by tools/guest/build-linux.
//
// Initramfs mode (HEARTH_INIT_ROOTFS undefined): prints the marker and
// reboots. Rootfs mode: remounts / read-write, writes /hearth-init-ran,
// syncs, prints the rootfs marker and reboots.
#include <stddef.h>

#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_sync 162
#define SYS_mount 165
#define SYS_reboot 169
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define MS_REMOUNT 32
#define LINUX_REBOOT_MAGIC1 0xfee1dead
#define LINUX_REBOOT_MAGIC2 672274793
#define LINUX_REBOOT_CMD_RESTART 0x01234567

static long syscall6(long n, long a, long b, long c, long d, long e) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                   : "rcx", "r11", "memory");
  return ret;
}

static size_t length(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

static void say(const char* s) { syscall6(SYS_write, 1, (long)s, (long)length(s), 0, 0); }

void _start(void) {
#ifdef HEARTH_INIT_ROOTFS
  syscall6(SYS_mount, (long)"/dev/root", (long)"/", 0, MS_REMOUNT, 0);
  long fd = syscall6(SYS_open, (long)"/hearth-init-ran", O_WRONLY | O_CREAT | O_TRUNC, 0644, 0, 0);
  if (fd >= 0) {
    const char* text = "written by the guest's init\n";
    syscall6(SYS_write, fd, (long)text, (long)length(text), 0, 0);
    syscall6(SYS_close, fd, 0, 0, 0, 0);
  }
  syscall6(SYS_sync, 0, 0, 0, 0, 0);
  say(fd >= 0 ? "HEARTH-LINUX-ROOTFS-OK\n" : "HEARTH-LINUX-ROOTFS-FAIL cannot write\n");
#else
  say("HEARTH-LINUX-INIT-OK\n");
#endif
  syscall6(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART, 0, 0);
  for (;;) {
  }
}
