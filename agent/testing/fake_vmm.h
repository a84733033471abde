// FakeVmm: an in-process stand-in for hearth-vmm that speaks the control
// protocol (proto/hearth/vmm/v1/control.proto) on its end of a socketpair:
// it sends Ready, answers every request the way the real VMM's state
// machine does (Boot -> RUNNING, Pause/Resume, LoadSnapshot, ...), writes
// to the console it is given, and ends on demand with a guest exit and an
// exit status. Tests make it fail a request, never answer one, send
// malformed messages or die, to check what the agent does then.
#ifndef HEARTH_AGENT_TESTING_FAKE_VMM_H_
#define HEARTH_AGENT_TESTING_FAKE_VMM_H_

#include <atomic>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "agent/launcher.h"
#include "common/message_channel.h"
#include "common/unique_fd.h"
#include "hearth/vmm/v1/control.pb.h"

namespace hearth::agent::testing {

class FakeVmm {
 public:
  using OpCase = hearth::vmm::v1::Request::OpCase;

  FakeVmm(std::string vm_id, int pid);
  ~FakeVmm();
  FakeVmm(const FakeVmm&) = delete;
  FakeVmm& operator=(const FakeVmm&) = delete;

  // Serves a new control connection (a spawn, or a re-attach); sends Ready
  // with the current state unless Ready is held.
  void Bind(MessageChannel channel);

  // Knobs.
  void FailNext(OpCase op, absl::Status status);  // answer the next `op` with this error
  void Hang(OpCase op);                           // never answer `op`
  void HoldReady();                               // Bind sends no Ready until ReleaseReady
  void ReleaseReady();
  void SetUnreachable() { unreachable_ = true; }  // a re-attach cannot connect
  void SendMalformed();                           // a datagram that is not a message
  void SendEvent(const hearth::vmm::v1::Event& event);
  void WriteConsole(const std::string& text);
  void AppendLog(const std::string& line);

  // The VMM ends: an optional GuestExit event, then the channel closes and
  // the process is gone with `status`.
  void Exit(std::optional<hearth::vmm::v1::GuestExit> guest, ExitStatus status);
  // SIGKILL.
  void Kill() { Exit(std::nullopt, ExitStatus{std::nullopt, 9}); }

  int pid() const { return pid_; }
  bool unreachable() const { return unreachable_; }
  bool exited() const;
  ExitStatus exit_status() const;
  hearth::vmm::v1::VmState state() const;
  std::vector<OpCase> received() const;
  int count(OpCase op) const;
  std::string log() const;
  // A descriptor that becomes readable once the VMM has ended.
  UniqueFd DupExitFd() const;

 private:
  void Serve();
  void Handle(MessageChannel::Message message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void SendReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::string vm_id_;
  const int pid_;
  UniqueFd exit_event_;
  std::atomic<bool> unreachable_{false};
  std::atomic<bool> stop_{false};

  mutable absl::Mutex mutex_;
  MessageChannel channel_ ABSL_GUARDED_BY(mutex_);
  uint64_t generation_ ABSL_GUARDED_BY(mutex_) = 0;
  hearth::vmm::v1::VmState state_ ABSL_GUARDED_BY(mutex_) = hearth::vmm::v1::VM_STATE_WAITING;
  bool hold_ready_ ABSL_GUARDED_BY(mutex_) = false;
  bool exited_ ABSL_GUARDED_BY(mutex_) = false;
  ExitStatus exit_status_ ABSL_GUARDED_BY(mutex_);
  std::map<OpCase, absl::Status> fail_ ABSL_GUARDED_BY(mutex_);
  std::set<OpCase> hang_ ABSL_GUARDED_BY(mutex_);
  std::vector<OpCase> received_ ABSL_GUARDED_BY(mutex_);
  UniqueFd console_ ABSL_GUARDED_BY(mutex_);
  std::string log_ ABSL_GUARDED_BY(mutex_);

  std::thread thread_;
};

}  // namespace hearth::agent::testing

#endif  // HEARTH_AGENT_TESTING_FAKE_VMM_H_
