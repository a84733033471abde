// VmManager: supervising VMM processes. Spawning and re-attaching (through
// the launcher), calls with deadlines, the VMM's control events, its
// console output, and what happens when it exits. Supervisor thread only.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/boot_resources.h"
#include "agent/guest_vsock.h"
#include "agent/image_roots.h"
#include "agent/vm_manager.h"
#include "common/fd_passing.h"
#include "common/file_io.h"
#include "glog/logging.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;

absl::Status VmManager::SpawnVmm(ManagedVm* entry) {
  // Planned (a uid of its own, so that VMMs cannot signal or read each
  // other) and saved by AddVm.
  absl::StatusOr<VmmProcess> spawned = launcher_->Spawn(&entry->record);
  if (!spawned.ok()) return spawned.status();
  entry->vm()->mutable_status()->set_vmm_pid(spawned->pid);
  absl::Status served = Supervise(entry, std::move(*spawned));
  if (!served.ok()) {
    // Unsupervised, it would run on unseen: end it now.
    absl::Status killed = launcher_->Kill(entry->process->handle);
    if (!killed.ok()) LOG(ERROR) << "vm " << entry->id() << ": " << killed.message();
    CleanUpProcess(entry);
  }
  return served;
}

absl::Status VmManager::Supervise(ManagedVm* entry, VmmProcess handle) {
  entry->process.emplace();
  ManagedVm::Process& process = *entry->process;
  process.connection = std::make_unique<VmmConnection>(MessageChannel(std::move(handle.control)));
  process.handle = std::move(handle);
  std::string id = entry->id();
  absl::Status added =
      loop_->Add(process.handle.exit_fd.get(), [this, id](uint32_t) { OnProcessExit(id); });
  if (added.ok()) {
    added = loop_->Add(process.connection->fd(), [this, id](uint32_t) { OnControlReadable(id); });
  }
  if (!added.ok()) {
    return absl::Status(added.code(), absl::StrCat("supervising the VMM: ", added.message()));
  }
  return absl::OkStatus();
}

absl::Status VmManager::WatchConsole(ManagedVm* entry, UniqueFd console) {
  std::string id = entry->id();
  entry->process->console = std::move(console);
  absl::Status added =
      loop_->Add(entry->process->console.get(), [this, id](uint32_t) { OnConsoleReadable(id); });
  if (!added.ok()) {
    entry->process->console.Reset();
    return absl::Status(added.code(), absl::StrCat("reading the console: ", added.message()));
  }
  return absl::OkStatus();
}

void VmManager::Reattach(ManagedVm* entry) {
  absl::StatusOr<VmmProcess> attached = launcher_->Reattach(entry->record);
  absl::Status served = attached.ok() ? Supervise(entry, std::move(*attached)) : attached.status();
  if (!served.ok()) {
    if (entry->process.has_value()) {
      absl::Status killed = launcher_->Kill(entry->process->handle);
      if (!killed.ok()) LOG(ERROR) << "vm " << entry->id() << ": " << killed.message();
    }
    CleanUpProcess(entry);
    entry->vm()->mutable_status()->mutable_exit()->set_console_tail("");
    SetState(entry, api::VM_STATE_FAILED, std::string(served.message()));
    return;
  }
  std::string id = entry->id();
  if (entry->record.pid() != entry->process->handle.pid) {
    // Adopted from a record that held only the intent: it names its VMM now.
    entry->record.set_pid(entry->process->handle.pid);
    entry->record.set_pid_start_time(entry->process->handle.start_time);
    LOG(INFO) << "vm " << id << ": adopted the VMM its intent record planned";
  }
  entry->vm()->mutable_status()->set_vmm_pid(entry->record.pid());
  LOG(INFO) << "vm " << id << ": re-attaching to the VMM, pid " << entry->record.pid();
  // Ready arrives first; then the console is handed over again.
  WhenReady(entry, [this, id](absl::Status status) {
    ManagedVm* e = Find(id);
    if (e == nullptr || !status.ok()) return;
    if (e->state() == api::VM_STATE_CONFIGURING) return;  // no console before boot
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = ConsolePair();
    absl::Status watched = pair.ok() ? WatchConsole(e, std::move(pair->first)) : pair.status();
    if (!watched.ok()) {
      LOG(WARNING) << "vm " << id << ": console not re-attached: " << watched.message();
      return;
    }
    control::Request attach;
    attach.mutable_attach_console();
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(pair->second));
    Call(e, attach, std::move(fds), [id](absl::StatusOr<control::Response> response) {
      absl::Status s = response.ok() ? VmmConnection::StatusOf(*response) : response.status();
      if (!s.ok()) LOG(WARNING) << "vm " << id << ": console not re-attached: " << s.message();
    });
  });
}

void VmManager::WhenReady(ManagedVm* entry, std::function<void(absl::Status)> action) {
  if (!entry->process.has_value()) {
    action(absl::UnavailableError("the VMM is not running"));
  } else if (entry->process->ready) {
    action(absl::OkStatus());
  } else {
    entry->process->on_ready.push_back(std::move(action));
  }
}

void VmManager::Call(ManagedVm* entry, control::Request request, std::vector<UniqueFd> fds,
                     std::function<void(absl::StatusOr<control::Response>)> done,
                     std::optional<absl::Duration> timeout) {
  if (!entry->process.has_value() || entry->process->connection->closed()) {
    return done(
        absl::UnavailableError(absl::StrCat("vm \"", entry->id(), "\" has no running VMM")));
  }
  std::vector<int> raw;
  for (const UniqueFd& fd : fds) raw.push_back(fd.get());
  absl::Time deadline = absl::Now() + timeout.value_or(options_.call_timeout);
  absl::Status sent = entry->process->connection->Start(std::move(request), raw, deadline, done);
  if (!sent.ok()) done(sent);
}

void VmManager::ExpireCalls() {
  const absl::Time now = absl::Now();
  std::vector<std::pair<std::string, VmmConnection::Callback>> expired;
  for (auto& [id, entry] : entries_) {
    if (!entry->process.has_value()) continue;
    for (auto& done : entry->process->connection->TakeExpired(now)) {
      expired.emplace_back(id, std::move(done));
    }
  }
  for (auto& [id, done] : expired) {
    LOG(WARNING) << "vm " << id << ": the VMM did not answer a request in time";
    done(absl::DeadlineExceededError(
        absl::StrCat("vm \"", id,
                     "\": the VMM did not answer in time (it may be wedged; "
                     "DeleteVm with force stops it)")));
  }
}

void VmManager::OnControlReadable(const std::string& vm_id) {
  ManagedVm* entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value()) return;
  VmmConnection* connection = entry->process->connection.get();
  uint64_t malformed = connection->malformed();
  absl::Status read = connection->ReadAvailable();
  if (connection->malformed() != malformed) {
    LOG(WARNING) << "vm " << vm_id << ": dropped " << connection->malformed() - malformed
                 << " malformed control message(s) from the VMM, the last: "
                 << connection->last_malformed();
  }
  if (!read.ok()) {
    // The VMM closed its end (it is exiting; the exit fd reports the end),
    // or the socket failed: nothing more will come.
    StopServing(connection->fd());
    if (!absl::IsUnavailable(read)) LOG(WARNING) << "vm " << vm_id << ": " << read.message();
  }
  // Responses first, then events, in the order they came. Either may end
  // the VM's entry (a deletion): look it up again after each.
  for (auto& complete : connection->TakeCompleted()) {
    complete();
    entry = Find(vm_id);
    if (entry == nullptr || !entry->process.has_value()) return;
  }
  while (std::optional<control::Event> event = entry->process->connection->TakeEvent()) {
    OnEvent(entry, *event);
    entry = Find(vm_id);
    if (entry == nullptr || !entry->process.has_value()) return;
  }
}

void VmManager::OnEvent(ManagedVm* entry, const control::Event& event) {
  switch (event.event_case()) {
    case control::Event::kReady: {
      entry->process->ready = true;
      entry->ApplyReady(event.ready(), !entry->process->handle.child, absl::Now());
      Publish(entry, api::WatchEvent::MODIFIED);
      std::vector<std::function<void(absl::Status)>> waiting = std::move(entry->process->on_ready);
      for (auto& action : waiting) action(absl::OkStatus());
      return;
    }
    case control::Event::kGuestExit:
      entry->process->guest_exit = event.guest_exit();
      return;
    case control::Event::kVsockConnectRequest:
      ConnectVsock(entry, event.vsock_connect_request().request_id(),
                   event.vsock_connect_request().port());
      return;
    default:
      return;
  }
}

void VmManager::ConnectVsock(ManagedVm* entry, uint64_t request_id, uint32_t port) {
  control::Request reply;
  reply.mutable_vsock_connected()->set_request_id(request_id);
  std::vector<UniqueFd> fds;
  const std::string path = absl::StrCat(entry->vm()->spec().vsock().uds_path(), "_", port);
  absl::StatusOr<UniqueFd> socket = ConnectGuestVsock(roots_, path);
  if (socket.ok()) {
    fds.push_back(std::move(*socket));
  } else {
    reply.mutable_vsock_connected()->set_error(std::string(socket.status().message()));
  }
  std::string id = entry->id();
  Call(entry, reply, std::move(fds), [id](absl::StatusOr<control::Response> response) {
    absl::Status s = response.ok() ? VmmConnection::StatusOf(*response) : response.status();
    if (!s.ok()) LOG(WARNING) << "vm " << id << ": vsock connection not handed over: " << s;
  });
}

void VmManager::OnConsoleReadable(const std::string& vm_id) {
  ManagedVm* entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value() || !entry->process->console.valid()) return;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(entry->process->console.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {
        StopServing(entry->process->console.get());
        entry->process->console.Reset();
      }
      return;
    }
    entry->console->Append(absl::string_view(buf, static_cast<size_t>(n)));
    // The serial_out_path copy is best effort: a full disk must not stop
    // the console (the ring buffer has the output).
    if (entry->serial_out.valid() &&
        ::write(entry->serial_out.get(), buf, static_cast<size_t>(n)) < 0) {
      LOG_EVERY_N(WARNING, 100) << "vm " << vm_id << ": serial_out_path: " << std::strerror(errno);
    }
    if (entry->NoteOutput(absl::Now())) Publish(entry, api::WatchEvent::MODIFIED);
  }
}

void VmManager::OnProcessExit(const std::string& vm_id) {
  // Output the VMM wrote before dying is still in the sockets.
  OnConsoleReadable(vm_id);
  OnControlReadable(vm_id);
  ManagedVm* entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value()) return;
  ManagedVm::Process& process = *entry->process;
  ExitDecision decision =
      ExitReason(launcher_->Reap(process.handle), process.guest_exit,
                 launcher_->LogTail(entry->record), ReadTail(entry->log_reader.get(), 4096),
                 entry->console->Tail(4096), entry->vm()->mutable_status()->mutable_exit());
  // Whoever waits on the VMM learns that it is gone.
  std::vector<VmmConnection::Callback> pending = process.connection->TakeAllPending();
  std::vector<std::function<void(absl::Status)>> on_ready = std::move(process.on_ready);
  CleanUpProcess(entry);
  // Killed for a DeleteVm: the deletion is the only change watchers see.
  // Killed after the agent failed the VM (a refused boot): the reason it
  // gave stays; the exit details are added.
  const bool deleting = !entry->pending_deletes.empty();
  if (!deleting && Live(entry->state())) {
    SetState(entry, decision.state, decision.reason);
  } else if (!deleting) {
    Publish(entry, api::WatchEvent::MODIFIED);
  }
  absl::Status gone = absl::UnavailableError(absl::StrCat("the VMM exited: ", decision.reason));
  for (auto& done : pending) done(gone);
  for (auto& action : on_ready) action(gone);
  entry = Find(vm_id);
  if (entry != nullptr && !entry->pending_deletes.empty()) FinishDelete(entry);
}

void VmManager::StopServing(int fd) {
  if (fd < 0 || !loop_->Watching(fd)) return;
  absl::Status removed = loop_->Remove(fd);
  if (!removed.ok()) LOG(ERROR) << "event loop: " << removed.message();
}

void VmManager::CleanUpProcess(ManagedVm* entry) {
  if (entry->process.has_value()) {
    ManagedVm::Process& process = *entry->process;
    StopServing(process.connection ? process.connection->fd() : -1);
    StopServing(process.console.get());
    StopServing(process.handle.exit_fd.get());
    entry->process.reset();
  }
  launcher_->Release(entry->record);
  if (entry->record.vsock_ino() != 0) {
    RemoveVsockSocket(roots_, entry->vm()->spec().vsock().uds_path(), entry->record.vsock_dev(),
                      entry->record.vsock_ino());
    entry->record.clear_vsock_dev();
    entry->record.clear_vsock_ino();
  }
  entry->serial_out.Reset();
  entry->log_reader.Reset();
  entry->console->Close();
  entry->record.set_pid(0);
  entry->vm()->mutable_status()->set_vmm_pid(0);
}

}  // namespace hearth::agent
