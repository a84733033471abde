// The agent's end of one VMM's control channel (proto/hearth/vmm/v1/
// control.proto): requests out with fds attached, responses matched by id,
// events queued. Used by hearthd and by tests that play the agent.
#ifndef HEARTH_AGENT_VMM_CONNECTION_H_
#define HEARTH_AGENT_VMM_CONNECTION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/message_channel.h"
#include "hearth/vmm/v1/control.pb.h"

namespace hearth::agent {

namespace control = ::hearth::vmm::v1;

class VmmConnection {
 public:
  explicit VmmConnection(MessageChannel channel) : channel_(std::move(channel)) {}

  // Sends `request` (its id is assigned here) with `fds`; returns the id.
  absl::StatusOr<uint64_t> Send(control::Request request, absl::Span<const int> fds = {});

  // Reads whatever is there (non-blocking if the socket is): responses are
  // kept for TakeResponse, events for TakeEvent. A malformed message (bad
  // framing, a payload that does not parse, an unknown kind) is dropped and
  // counted, and reading goes on: the channel stays usable. UNAVAILABLE
  // when the VMM closed the channel; other errors are the socket's.
  absl::Status ReadAvailable();
  // Messages dropped as malformed so far, and what was wrong with the last.
  uint64_t malformed() const { return malformed_; }
  const std::string& last_malformed() const { return last_malformed_; }
  std::optional<control::Response> TakeResponse(uint64_t id);
  std::optional<control::Event> TakeEvent();

  // Asynchronous calls (the agent's event loop): Start sends `request` and
  // keeps `done` until the answer is read (TakeCompleted), the deadline
  // passes (TakeExpired) or the VMM is gone (TakeAllPending). If the
  // request cannot be sent, Start returns why and does not keep `done`.
  // A connection uses either these or the blocking helpers below.
  using Callback = std::function<void(absl::StatusOr<control::Response>)>;
  absl::Status Start(control::Request request, absl::Span<const int> fds, absl::Time deadline,
                     Callback done);
  // The calls answered by what ReadAvailable read, each bound to its
  // answer, in the order they were sent. The caller runs them (they may
  // destroy this connection's owner).
  std::vector<std::function<void()>> TakeCompleted();
  // The calls whose deadline is at or before `now`.
  std::vector<Callback> TakeExpired(absl::Time now);
  // Every call still waiting.
  std::vector<Callback> TakeAllPending();
  size_t pending() const { return pending_.size(); }

  // Blocking helpers (tests, and the agent's start-up path): wait up to
  // `timeout` for the answer to `request` / for the next event.
  absl::StatusOr<control::Response> Call(control::Request request, absl::Span<const int> fds,
                                         absl::Duration timeout);
  absl::StatusOr<control::Event> WaitForEvent(absl::Duration timeout);

  // A Response's code and message as a Status.
  static absl::Status StatusOf(const control::Response& response);

  int fd() const { return channel_.fd(); }
  bool closed() const { return closed_; }

 private:
  absl::Status WaitReadable(absl::Time deadline);

  MessageChannel channel_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, control::Response> responses_;
  struct Pending {
    absl::Time deadline;
    Callback done;
  };
  std::map<uint64_t, Pending> pending_;
  std::deque<control::Event> events_;
  bool closed_ = false;
  uint64_t malformed_ = 0;
  std::string last_malformed_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_VMM_CONNECTION_H_
