// Seccomp filters for hearth-vmm, one allow-list per thread kind, built with
// libseccomp. The lists are data (SyscallRule) so they can be printed,
// counted and tested; InstallFilter turns one into a BPF filter for the
// calling thread only (filters are per thread: each kind gets exactly its
// own list).
//
// Anything not on the list traps: the SIGSYS handler writes
// "hearth-vmm: bad syscall N at 0xADDR" to stderr (where the agent collects
// it), then calls kill(2), whose rule is SECCOMP_RET_KILL_PROCESS, so the
// parent sees the process killed by SIGSYS (even as pid 1 of a pid
// namespace). clone3 answers ENOSYS (its flags live in memory, where
// seccomp cannot look; glibc then falls back to clone).
//
// Dangerous calls carry argument checks: ioctl only with the KVM and tap
// requests Hearth uses, mmap/mprotect never with PROT_EXEC, tgkill only with
// the vCPU kick signal, fcntl only F_GETFL/F_SETFL, socket only AF_UNIX
// (standalone vsock).
#ifndef HEARTH_VMM_SECCOMP_SECCOMP_H_
#define HEARTH_VMM_SECCOMP_SECCOMP_H_

#include <cstdint>
#include <string>
#include <vector>

#include <linux/filter.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hearth::vmm {

enum class ThreadKind { kEventLoop, kVcpu };

struct SeccompOptions {
  // Standalone mode: the VMM itself connects guest-initiated vsock streams
  // (socket + connect); in agent mode the agent does.
  bool standalone = false;
  // The vCPU kick signal (SIGRTMIN), allowed for tgkill.
  int kick_signal = 0;
};

// One allowed system call and, optionally, a condition on one argument:
// `arg` compared with `value` under `mask` (masked equality), or plain
// equality when mask == ~0.
struct SyscallRule {
  std::string name;
  int number;
  int arg = -1;  // -1: no condition
  uint64_t mask = ~0ull;
  uint64_t value = 0;
};

std::vector<SyscallRule> AllowList(ThreadKind kind, const SeccompOptions& options);
// How many distinct system calls a list allows.
size_t DistinctSyscalls(const std::vector<SyscallRule>& rules);

// Installs the SIGSYS reporter (process-wide; call once, before filters).
absl::Status InstallViolationReporter();

// A filter compiled to BPF, ready to be loaded on any thread. Compiling
// (libseccomp) takes milliseconds; the VMM does it while it waits for the
// agent's Boot, so that only the loading is on the way to the guest.
struct CompiledFilter {
  std::vector<sock_filter> program;
};
absl::StatusOr<CompiledFilter> CompileFilter(ThreadKind kind, const SeccompOptions& options);
// Loads `filter` on the calling thread (no_new_privs, then the filter).
absl::Status LoadFilter(const CompiledFilter& filter);
// CompileFilter + LoadFilter.
absl::Status InstallFilter(ThreadKind kind, const SeccompOptions& options);

// Process set-up that would otherwise happen lazily under a filter: the
// time zone for log timestamps and malloc's arenas (environment changes:
// call while no other thread runs), and Abseil's CPU count and frequency
// (thread-safe, and can take milliseconds). PrepareForSeccomp does both.
void PrepareProcessForSeccomp();
void PrepareAbseilForSeccomp();
void PrepareForSeccomp();

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_SECCOMP_SECCOMP_H_
