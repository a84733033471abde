#include "vmm/seccomp/seccomp.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/base/internal/sysinfo.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/unique_fd.h"
#include "vmm/kvm/kvm.h"

namespace hearth::vmm {
namespace {

SyscallRule Allow(const char* name) {
  return SyscallRule{name, seccomp_syscall_resolve_name(name)};
}

SyscallRule AllowIf(const char* name, int arg, uint64_t value, uint64_t mask = ~0ull) {
  return SyscallRule{name, seccomp_syscall_resolve_name(name), arg, mask, value};
}

// Both thread kinds: memory management (never executable), locks, signals
// used by vCPU kicks and by the SIGSYS reporter, thread exit.
void AddCommon(const SeccompOptions& options, std::vector<SyscallRule>* rules) {
  for (const char* name :
       {"brk", "munmap", "mremap", "madvise", "futex", "sched_yield", "write", "exit", "exit_group",
        "rt_sigreturn", "rt_sigprocmask", "getpid", "gettid", "restart_syscall"}) {
    rules->push_back(Allow(name));
  }
  // Abseil's Mutex re-reads a blocking thread's scheduling priority now and
  // then (pthread_getschedparam of itself, by tid). Read-only.
  rules->push_back(Allow("sched_getparam"));
  rules->push_back(Allow("sched_getscheduler"));
  // No executable memory: PROT_EXEC must be clear.
  rules->push_back(AllowIf("mmap", 2, 0, PROT_EXEC));
  rules->push_back(AllowIf("mprotect", 2, 0, PROT_EXEC));
  // tgkill: only to kick a vCPU.
  rules->push_back(AllowIf("tgkill", 2, static_cast<uint64_t>(options.kick_signal)));
}

void AddIoctls(const std::vector<unsigned long>& requests, std::vector<SyscallRule>* rules) {
  for (unsigned long request : requests) rules->push_back(AllowIf("ioctl", 1, request));
}

}  // namespace

std::vector<SyscallRule> AllowList(ThreadKind kind, const SeccompOptions& options) {
  std::vector<SyscallRule> rules;
  AddCommon(options, &rules);
  if (kind == ThreadKind::kVcpu) {
    // KVM_RUN and reading registers for error reports; KVM_IRQ_LINE for the
    // legacy devices' interrupts; send() for console output to the agent.
    AddIoctls({KVM_RUN, KVM_GET_REGS, KVM_IRQ_LINE}, &rules);
    rules.push_back(Allow("sendto"));
    return rules;
  }
  // The event loop: epoll, device backends (block file, tap, vsock sockets,
  // getrandom, timers), the control channel.
  for (const char* name :
       {"epoll_wait",      "epoll_pwait", "epoll_ctl", "read",    "readv",     "writev",
        "pread64",         "pwrite64",    "preadv",    "pwritev", "fdatasync", "close",
        "recvmsg",         "sendmsg",     "sendto",    "accept4", "shutdown",  "getrandom",
        "timerfd_settime", "newfstatat",  "fstat",     "lseek",   "mincore"}) {
    rules.push_back(Allow(name));
  }
  // The reattach socket checks who connects.
  rules.push_back(AllowIf("getsockopt", 2, SO_PEERCRED));
  rules.push_back(AllowIf("fcntl", 1, F_GETFL));
  rules.push_back(AllowIf("fcntl", 1, F_SETFL));
  AddIoctls({KVM_IRQ_LINE, TUNSETOFFLOAD}, &rules);
  // Snapshots: reading vCPU, interrupt controller and clock state, and
  // sizing the memory file.
  AddIoctls(kvm::StateReadingIoctls(), &rules);
  rules.push_back(Allow("ftruncate"));
  if (options.standalone) {
    rules.push_back(AllowIf("socket", 0, AF_UNIX));
    rules.push_back(Allow("connect"));
  }
  return rules;
}

size_t DistinctSyscalls(const std::vector<SyscallRule>& rules) {
  std::set<int> numbers;
  for (const SyscallRule& rule : rules) numbers.insert(rule.number);
  return numbers.size();
}

namespace {

// Async-signal-safe: formats the number and uses raw system calls only
// (each on the allow-lists).
void ReportViolation(int, siginfo_t* info, void*) {
  char message[96] = "hearth-vmm: bad syscall ";
  size_t length = std::strlen(message);
  char digits[16];
  int n = 0;
  unsigned value = static_cast<unsigned>(info->si_syscall);
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && n < 15);
  while (n > 0) message[length++] = digits[--n];
  // Where it was made, for the logs: " at 0x<hex>".
  const char* at = " at 0x";
  for (const char* p = at; *p; ++p) message[length++] = *p;
  uint64_t address = reinterpret_cast<uint64_t>(info->si_call_addr);
  int shift = 60;
  while (shift > 0 && ((address >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) message[length++] = "0123456789abcdef"[(address >> shift) & 0xf];
  message[length++] = '\n';
  // Best effort: the process is killed next whether or not stderr took it.
  (void)!::syscall(SYS_write, 2, message, length);
  // kill(2) is on no allow-list but has its own rule: kill the process with
  // SIGSYS (SECCOMP_RET_KILL_PROCESS). Unlike re-raising the signal, that
  // also works when the VMM is pid 1 of its own pid namespace, where
  // self-sent signals with default actions are ignored.
  ::syscall(SYS_kill, 0, SIGSYS);
  ::syscall(SYS_exit_group, 128 + SIGSYS);  // not reached
}

}  // namespace

absl::Status InstallViolationReporter() {
  struct sigaction action = {};
  action.sa_sigaction = ReportViolation;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGSYS, &action, nullptr) < 0) return ErrnoStatus("sigaction(SIGSYS)");
  return absl::OkStatus();
}

absl::StatusOr<CompiledFilter> CompileFilter(ThreadKind kind, const SeccompOptions& options) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  auto fail = [&](const std::string& what, int rc) {
    seccomp_release(ctx);
    return ErrnoStatus(-rc, what);
  };
  for (const SyscallRule& rule : AllowList(kind, options)) {
    if (rule.number < 0) {
      seccomp_release(ctx);
      return absl::InternalError(absl::StrCat("seccomp: unknown syscall ", rule.name));
    }
    int rc;
    if (rule.arg < 0) {
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, rule.number, 0);
    } else if (rule.mask == ~0ull) {
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, rule.number, 1,
                            SCMP_CMP(static_cast<unsigned>(rule.arg), SCMP_CMP_EQ, rule.value));
    } else {
      rc = seccomp_rule_add(
          ctx, SCMP_ACT_ALLOW, rule.number, 1,
          SCMP_CMP(static_cast<unsigned>(rule.arg), SCMP_CMP_MASKED_EQ, rule.mask, rule.value));
    }
    if (rc < 0) return fail(absl::StrCat("seccomp_rule_add ", rule.name), rc);
  }
  // glibc's pthread_create tries clone3 first; ENOSYS makes it fall back to
  // clone, whose flags a filter could inspect.
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc < 0) return fail("seccomp_rule_add clone3", rc);
  // The violation reporter's exit (see ReportViolation).
  rc = seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(kill), 0);
  if (rc < 0) return fail("seccomp_rule_add kill", rc);
  // libseccomp writes the program to an fd: a memfd, read back whole.
  UniqueFd memfd(static_cast<int>(::syscall(SYS_memfd_create, "hearth-seccomp", MFD_CLOEXEC)));
  if (!memfd.valid()) {
    seccomp_release(ctx);
    return ErrnoStatus("memfd_create");
  }
  rc = seccomp_export_bpf(ctx, memfd.get());
  seccomp_release(ctx);
  if (rc < 0) return ErrnoStatus(-rc, "seccomp_export_bpf");
  off_t bytes = ::lseek(memfd.get(), 0, SEEK_END);
  if (bytes <= 0 || bytes % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    return absl::InternalError(absl::StrCat("seccomp: exported program of ", bytes, " bytes"));
  }
  CompiledFilter filter;
  filter.program.resize(static_cast<size_t>(bytes) / sizeof(sock_filter));
  if (::pread(memfd.get(), filter.program.data(), static_cast<size_t>(bytes), 0) != bytes) {
    return ErrnoStatus("read the seccomp program");
  }
  return filter;
}

absl::Status LoadFilter(const CompiledFilter& filter) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return ErrnoStatus("PR_SET_NO_NEW_PRIVS");
  struct sock_fprog program = {static_cast<unsigned short>(filter.program.size()),
                               const_cast<sock_filter*>(filter.program.data())};
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) < 0) {
    return ErrnoStatus("seccomp(SECCOMP_SET_MODE_FILTER)");
  }
  return absl::OkStatus();
}

absl::Status InstallFilter(ThreadKind kind, const SeccompOptions& options) {
  absl::StatusOr<CompiledFilter> filter = CompileFilter(kind, options);
  if (!filter.ok()) return filter.status();
  return LoadFilter(*filter);
}

void PrepareProcessForSeccomp() {
  // glog's timestamps call localtime_r, which reads /etc/localtime. In the
  // jail (empty environment, no /etc) glibc would try again and again; a
  // POSIX time zone string needs no file at all.
  if (::getenv("TZ") == nullptr) ::setenv("TZ", "UTC0", 1);
  ::tzset();
  time_t now = ::time(nullptr);
  struct tm local;
  ::localtime_r(&now, &local);
  // glibc's malloc reads /sys when threads need more arenas than its
  // default test allows; a fixed limit means it never has to.
  ::mallopt(M_ARENA_MAX, 2);
}

void PrepareAbseilForSeccomp() {
  // Abseil's mutexes size their spinning by the CPU count and time their
  // priority checks by the CPU frequency, both read once from /sys on first
  // contention (where /sys lacks the frequency, Abseil measures the TSC for
  // a few milliseconds). Called for that side effect; the values are unused.
  (void)absl::base_internal::NumCPUs();
  (void)absl::base_internal::NominalCPUFrequency();
}

void PrepareForSeccomp() {
  PrepareProcessForSeccomp();
  PrepareAbseilForSeccomp();
}

}  // namespace hearth::vmm
