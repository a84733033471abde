#include "agent/vmm_connection.h"

#include <poll.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace hearth::agent {

absl::StatusOr<uint64_t> VmmConnection::Send(control::Request request, absl::Span<const int> fds) {
  if (closed_) return absl::UnavailableError("the VMM closed its control channel");
  const uint64_t id = next_id_++;
  request.set_id(id);
  RETURN_IF_ERROR(channel_.Send(control::KIND_REQUEST, request.SerializeAsString(), fds));
  return id;
}

absl::Status VmmConnection::ReadAvailable() {
  auto drop = [this](absl::string_view what) {
    ++malformed_;
    last_malformed_ = std::string(what);
  };
  while (!closed_) {
    struct pollfd pfd = {channel_.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0) return absl::OkStatus();
    absl::StatusOr<std::optional<MessageChannel::Message>> message = channel_.Receive();
    if (!message.ok()) {
      // MessageChannel reports a bad datagram (consumed) as INVALID_ARGUMENT
      // or, for another framing version, FAILED_PRECONDITION.
      if (!absl::IsInvalidArgument(message.status()) &&
          !absl::IsFailedPrecondition(message.status())) {
        return message.status();
      }
      drop(message.status().message());
      continue;
    }
    if (!message->has_value()) {
      closed_ = true;
      break;
    }
    if ((*message)->kind == control::KIND_RESPONSE) {
      control::Response response;
      if (!response.ParseFromString((*message)->payload)) {
        drop("a response that does not parse");
        continue;
      }
      responses_[response.id()] = std::move(response);
    } else if ((*message)->kind == control::KIND_EVENT) {
      control::Event event;
      if (!event.ParseFromString((*message)->payload)) {
        drop("an event that does not parse");
        continue;
      }
      events_.push_back(std::move(event));
    } else {
      drop(absl::StrCat("message kind ", (*message)->kind));
    }
  }
  return closed_ ? absl::UnavailableError("the VMM closed its control channel") : absl::OkStatus();
}

std::optional<control::Response> VmmConnection::TakeResponse(uint64_t id) {
  auto it = responses_.find(id);
  if (it == responses_.end()) return std::nullopt;
  control::Response response = std::move(it->second);
  responses_.erase(it);
  return response;
}

std::optional<control::Event> VmmConnection::TakeEvent() {
  if (events_.empty()) return std::nullopt;
  control::Event event = std::move(events_.front());
  events_.pop_front();
  return event;
}

absl::Status VmmConnection::Start(control::Request request, absl::Span<const int> fds,
                                  absl::Time deadline, Callback done) {
  ASSIGN_OR_RETURN(uint64_t id, Send(std::move(request), fds));
  pending_[id] = Pending{deadline, std::move(done)};
  return absl::OkStatus();
}

std::vector<std::function<void()>> VmmConnection::TakeCompleted() {
  std::vector<std::function<void()>> completed;
  for (auto it = pending_.begin(); it != pending_.end();) {
    std::optional<control::Response> response = TakeResponse(it->first);
    if (!response.has_value()) {
      ++it;
      continue;
    }
    completed.push_back([done = std::move(it->second.done), r = std::move(*response)]() mutable {
      done(std::move(r));
    });
    it = pending_.erase(it);
  }
  // What is left answers no waiting call (a late answer to an expired one,
  // or an id the VMM made up): nothing will take it.
  responses_.clear();
  return completed;
}

std::vector<VmmConnection::Callback> VmmConnection::TakeExpired(absl::Time now) {
  std::vector<Callback> expired;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    expired.push_back(std::move(it->second.done));
    it = pending_.erase(it);
  }
  return expired;
}

std::vector<VmmConnection::Callback> VmmConnection::TakeAllPending() {
  std::vector<Callback> all;
  for (auto& [id, call] : pending_) all.push_back(std::move(call.done));
  pending_.clear();
  return all;
}

absl::Status VmmConnection::WaitReadable(absl::Time deadline) {
  struct pollfd pfd = {channel_.fd(), POLLIN, 0};
  int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
  if (left <= 0) return absl::DeadlineExceededError("no answer from the VMM in time");
  int n = ::poll(&pfd, 1, static_cast<int>(left));
  if (n == 0) return absl::DeadlineExceededError("no answer from the VMM in time");
  return absl::OkStatus();
}

absl::StatusOr<control::Response> VmmConnection::Call(control::Request request,
                                                      absl::Span<const int> fds,
                                                      absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  ASSIGN_OR_RETURN(uint64_t id, Send(std::move(request), fds));
  while (true) {
    absl::Status read = ReadAvailable();
    if (std::optional<control::Response> response = TakeResponse(id)) return *response;
    RETURN_IF_ERROR(read);
    RETURN_IF_ERROR(WaitReadable(deadline));
  }
}

absl::StatusOr<control::Event> VmmConnection::WaitForEvent(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::Status read = ReadAvailable();
    if (std::optional<control::Event> event = TakeEvent()) return *event;
    RETURN_IF_ERROR(read);
    RETURN_IF_ERROR(WaitReadable(deadline));
  }
}

absl::Status VmmConnection::StatusOf(const control::Response& response) {
  return absl::Status(static_cast<absl::StatusCode>(response.code()), response.message());
}

}  // namespace hearth::agent
