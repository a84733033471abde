// The VMM side of the control channel (proto/hearth/vmm/v1/control.proto):
// hearth-vmm in agent mode. Reads framed requests from the channel on the
// VMM's event loop, answers each one (malformed, unknown or out-of-order
// requests get an error code, never a crash), and sends events (Ready, state
// changes, how the guest ended, vsock connect requests).
//
// Before Boot there is no VM: RunUntilBoot() serves the channel until a Boot
// (or LoadSnapshot) arrives and returns the VmmConfig built from it and its
// fds. main then builds and starts the Vmm, calls Attach(), and runs the
// Vmm's loop, on which the server keeps answering.
#ifndef HEARTH_VMM_CONTROL_CONTROL_SERVER_H_
#define HEARTH_VMM_CONTROL_CONTROL_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"
#include "common/message_channel.h"
#include "hearth/vmm/v1/control.pb.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/config/vmm_config.h"
#include "vmm/console.h"
#include "vmm/devices/legacy/serial.h"
#include "vmm/devices/virtio/vsock/vsock.h"
#include "vmm/vmm.h"

namespace hearth::vmm {

inline constexpr uint32_t kControlProtocolVersion = 1;

// What the agent asked the VMM to start: a fresh boot, or a snapshot to
// restore (then `config` holds only the devices' files).
struct StartPlan {
  VmmConfig config;
  std::optional<hearth::vmm::v1::VmSnapshot> snapshot = std::nullopt;
  UniqueFd snapshot_memory = UniqueFd();
  // Restore: run the guest at once (else it stays paused), and whether to
  // log dirty pages from now on.
  bool resume = true;
  bool track_dirty_pages = false;
};

class ControlServer {
 public:
  // `timer` (from VMM start) times Boot and the first guest output for Info.
  ControlServer(MessageChannel channel, EventLoop* loop, const BootTimer* timer);
  ~ControlServer();

  // Sends Ready and serves requests until a Boot or LoadSnapshot arrives
  // (returns what to start, fds opened) or the channel closes for good
  // (UNAVAILABLE).
  absl::StatusOr<StartPlan> RunUntilBoot();

  // The console fd that came with Boot (serial output and input).
  UniqueFd TakeConsole() { return std::move(console_); }

  // From now on requests act on `vmm`; answers the pending Boot or
  // LoadSnapshot.
  void Attach(Vmm* vmm);
  // Answers the pending Boot or LoadSnapshot with an error (the VM could
  // not be built).
  void FailBoot(const absl::Status& status);

  // A listening SOCK_SEQPACKET socket (created by the agent before the
  // jail) on which a restarted agent re-attaches: a new connection replaces
  // the channel, gets Ready with the current state, and may send
  // AttachConsole. Only peers with uid `agent_uid` are accepted.
  void SetReattachListener(UniqueFd listener, uid_t agent_uid);

  // Where serial output goes; AttachConsole swaps its fd.
  void SetConsole(std::shared_ptr<class SocketConsoleOutput> output);

  // Tells the agent how the guest ended.
  void SendGuestExit(const VmOutcome& outcome);

  // For the vsock device: asks the agent to connect to "<uds_path>_<port>".
  std::unique_ptr<virtio::VsockConnector> MakeVsockConnector();

 private:
  class AgentVsockConnector;

  void OnReadable();
  void AcceptReattach();
  void SendReady();
  void CloseChannel();
  void Handle(const v1::Request& request, std::vector<UniqueFd> fds);
  void Reply(uint64_t id, const absl::Status& status, v1::Response response = {});
  void SendEvent(const v1::Event& event);
  absl::Status HandleBoot(const v1::Boot& boot, std::vector<UniqueFd> fds);
  absl::Status HandleLoadSnapshot(const v1::LoadSnapshot& load, std::vector<UniqueFd> fds);
  absl::Status HandleCreateSnapshot(const v1::CreateSnapshot& create, std::vector<UniqueFd> fds,
                                    v1::Response* response);
  absl::Status HandlePatchDrive(const v1::PatchDrive& patch, std::vector<UniqueFd> fds);
  absl::Status HandlePatchNet(const v1::PatchNetworkInterface& patch);
  v1::Info MakeInfo() const;

  MessageChannel channel_;
  EventLoop* loop_;
  Vmm* vmm_ = nullptr;
  bool closed_ = false;
  std::optional<uint64_t> pending_boot_;
  std::optional<StartPlan> plan_;
  UniqueFd console_;
  UniqueFd reattach_listener_;
  uid_t agent_uid_ = 0;
  std::shared_ptr<SocketConsoleOutput> console_output_;
  const BootTimer* timer_;
  int64_t boot_us_ = -1;
  // Guest-initiated vsock connections waiting for the agent.
  uint64_t next_vsock_request_ = 1;
  std::map<uint64_t, std::function<void(absl::StatusOr<UniqueFd>)>> vsock_waiters_;
};

// Guest serial output to a console socket: non-blocking, and dropped (and
// counted) rather than stalling the vCPU if the agent is not reading or has
// gone away.
class SocketConsoleOutput : public devices::SerialOutput {
 public:
  SocketConsoleOutput(UniqueFd fd, std::function<void()> on_first_output)
      : fd_(std::move(fd)), on_first_output_(std::move(on_first_output)) {}
  void Write(absl::Span<const uint8_t> bytes) override;
  uint64_t dropped() const { return dropped_.load(); }
  // A new console socket (re-attached agent); returns the old one.
  UniqueFd Replace(UniqueFd fd);
  int fd() const;

 private:
  mutable absl::Mutex mutex_;
  UniqueFd fd_ ABSL_GUARDED_BY(mutex_);
  std::function<void()> on_first_output_;
  std::atomic<bool> seen_output_{false};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_CONTROL_CONTROL_SERVER_H_
