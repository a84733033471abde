#include "agent/testing/fake_vmm.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace hearth::agent::testing {

namespace control = ::hearth::vmm::v1;

FakeVmm::FakeVmm(std::string vm_id, int pid)
    : vm_id_(std::move(vm_id)),
      pid_(pid),
      exit_event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      thread_([this] { Serve(); }) {}

FakeVmm::~FakeVmm() {
  stop_ = true;
  thread_.join();
}

void FakeVmm::Bind(MessageChannel channel) {
  absl::MutexLock lock(&mutex_);
  if (exited_) return;
  channel_ = std::move(channel);
  ++generation_;
  if (!hold_ready_) SendReadyLocked();
}

void FakeVmm::SendReadyLocked() {
  control::Event event;
  control::Ready* ready = event.mutable_ready();
  ready->set_protocol_version(1);
  ready->set_vmm_version("fake");
  ready->set_pid(pid_);
  ready->set_state(state_);
  if (channel_.valid()) {
    (void)channel_.Send(control::KIND_EVENT, event.SerializeAsString());  // the agent may be gone
  }
}

void FakeVmm::FailNext(OpCase op, absl::Status status) {
  absl::MutexLock lock(&mutex_);
  fail_[op] = std::move(status);
}

void FakeVmm::Hang(OpCase op) {
  absl::MutexLock lock(&mutex_);
  hang_.insert(op);
}

void FakeVmm::HoldReady() {
  absl::MutexLock lock(&mutex_);
  hold_ready_ = true;
}

void FakeVmm::ReleaseReady() {
  absl::MutexLock lock(&mutex_);
  hold_ready_ = false;
  SendReadyLocked();
}

void FakeVmm::SendMalformed() {
  absl::MutexLock lock(&mutex_);
  if (!channel_.valid()) return;
  (void)!::send(channel_.fd(), "garbage!", 8, MSG_NOSIGNAL);  // test input; checked by the agent
  (void)channel_.Send(control::KIND_EVENT, std::string("\xff\xff\xff", 3));
  (void)channel_.Send(77, "");
}

void FakeVmm::SendEvent(const control::Event& event) {
  absl::MutexLock lock(&mutex_);
  if (channel_.valid()) (void)channel_.Send(control::KIND_EVENT, event.SerializeAsString());
}

void FakeVmm::WriteConsole(const std::string& text) {
  absl::MutexLock lock(&mutex_);
  if (console_.valid()) (void)!::send(console_.get(), text.data(), text.size(), MSG_NOSIGNAL);
}

void FakeVmm::AppendLog(const std::string& line) {
  absl::MutexLock lock(&mutex_);
  log_ += line + "\n";
}

void FakeVmm::Exit(std::optional<control::GuestExit> guest, ExitStatus status) {
  absl::MutexLock lock(&mutex_);
  if (exited_) return;
  if (guest.has_value() && channel_.valid()) {
    control::Event event;
    *event.mutable_guest_exit() = *guest;
    (void)channel_.Send(control::KIND_EVENT, event.SerializeAsString());
  }
  exited_ = true;
  exit_status_ = status;
  state_ = control::VM_STATE_STOPPED;
  channel_ = MessageChannel();
  console_.Reset();
  uint64_t one = 1;
  (void)!::write(exit_event_.get(), &one, sizeof(one));
}

bool FakeVmm::exited() const {
  absl::MutexLock lock(&mutex_);
  return exited_;
}

ExitStatus FakeVmm::exit_status() const {
  absl::MutexLock lock(&mutex_);
  return exit_status_;
}

control::VmState FakeVmm::state() const {
  absl::MutexLock lock(&mutex_);
  return state_;
}

std::vector<FakeVmm::OpCase> FakeVmm::received() const {
  absl::MutexLock lock(&mutex_);
  return received_;
}

int FakeVmm::count(OpCase op) const {
  int n = 0;
  for (OpCase o : received()) n += o == op;
  return n;
}

std::string FakeVmm::log() const {
  absl::MutexLock lock(&mutex_);
  return log_;
}

UniqueFd FakeVmm::DupExitFd() const {
  return UniqueFd(::fcntl(exit_event_.get(), F_DUPFD_CLOEXEC, 0));
}

void FakeVmm::Serve() {
  while (!stop_) {
    int fd;
    uint64_t generation;
    {
      absl::MutexLock lock(&mutex_);
      fd = channel_.valid() ? channel_.fd() : -1;
      generation = generation_;
    }
    if (fd < 0) {
      ::usleep(2000);
      continue;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, 10) <= 0) continue;
    absl::MutexLock lock(&mutex_);
    if (generation != generation_ || !channel_.valid()) continue;  // rebound meanwhile
    absl::StatusOr<std::optional<MessageChannel::Message>> message = channel_.Receive();
    if (!message.ok()) continue;
    if (!message->has_value()) {
      // The agent went away: wait for a re-attach, as the real VMM does.
      channel_ = MessageChannel();
      continue;
    }
    Handle(std::move(**message));
  }
}

void FakeVmm::Handle(MessageChannel::Message message) {
  control::Request request;
  if (message.kind != control::KIND_REQUEST || !request.ParseFromString(message.payload)) return;
  const OpCase op = request.op_case();
  received_.push_back(op);
  if (hang_.count(op)) return;
  control::Response response;
  response.set_id(request.id());
  auto fail = fail_.find(op);
  if (fail != fail_.end()) {
    response.set_code(static_cast<int>(fail->second.code()));
    response.set_message(std::string(fail->second.message()));
    fail_.erase(fail);
    (void)channel_.Send(control::KIND_RESPONSE, response.SerializeAsString());
    return;
  }
  auto take_console = [&](const control::FdMap& map) {
    if (map.has_console() && map.console() >= 0 &&
        static_cast<size_t>(map.console()) < message.fds.size()) {
      console_ = std::move(message.fds[map.console()]);
    }
  };
  switch (op) {
    case control::Request::kBoot:
      take_console(request.boot().fds());
      state_ = control::VM_STATE_RUNNING;
      if (console_.valid()) (void)!::send(console_.get(), "fake guest: booted\n", 19, MSG_NOSIGNAL);
      break;
    case control::Request::kLoadSnapshot:
      take_console(request.load_snapshot().fds());
      state_ = request.load_snapshot().resume_vm() ? control::VM_STATE_RUNNING
                                                   : control::VM_STATE_PAUSED;
      break;
    case control::Request::kPause:
      state_ = control::VM_STATE_PAUSED;
      break;
    case control::Request::kResume:
      state_ = control::VM_STATE_RUNNING;
      break;
    case control::Request::kFlushMetrics:
      response.mutable_metrics()->set_json(absl::StrCat("{\"vm\": \"", vm_id_, "\"}"));
      break;
    case control::Request::kCreateSnapshot:
      response.mutable_snapshot_created()->set_state_bytes(100);
      response.mutable_snapshot_created()->set_memory_bytes(4096);
      break;
    case control::Request::kGetBalloonStatistics:
      response.mutable_balloon_statistics()->set_target_pages(1);
      break;
    case control::Request::kAttachConsole:
      if (!message.fds.empty()) console_ = std::move(message.fds[0]);
      break;
    case control::Request::kGetInfo:
      response.mutable_info()->set_state(state_);
      break;
    default:
      break;
  }
  (void)channel_.Send(control::KIND_RESPONSE, response.SerializeAsString());
}

}  // namespace hearth::agent::testing
