#include "bench/qemu_microvm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/status_macros.h"

extern char** environ;

namespace hearth::bench {
namespace {

int MillisecondsLeft(absl::Time deadline) {
  return static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
}

}  // namespace

absl::StatusOr<std::unique_ptr<QemuMicrovm>> QemuMicrovm::Start(const QemuOptions& options) {
  std::unique_ptr<QemuMicrovm> vm(new QemuMicrovm(options));
  std::vector<std::string> argv = {
      "qemu-system-x86_64",
      "-M",
      "microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off",
      "-enable-kvm",
      "-cpu",
      "host,-arch-capabilities",
      "-m",
      absl::StrCat(options.mem_mib),
      "-nodefaults",
      "-no-user-config",
      "-nographic",
      "-no-reboot",
      "-serial",
      "stdio",
      "-device",
      "isa-debug-exit,iobase=0xf4,iosize=0x04",
      "-global",
      "virtio-mmio.force-legacy=false",
      "-kernel",
      options.guest,
      "-append",
      options.append,
      "-qmp",
      absl::StrCat("unix:", options.qmp_socket, ",server=on,wait=off")};
  argv.insert(argv.end(), options.extra.begin(), options.extra.end());
  ::unlink(options.qmp_socket.c_str());

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoStatus("pipe2 for QEMU's console");
  vm->console_.Reset(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_addopen(&actions, 2, options.log.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  vm->started_ = absl::Now();
  int rc = posix_spawnp(&vm->pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    vm->pid_ = -1;
    return ErrnoStatus(rc, "posix_spawn qemu-system-x86_64");
  }
  return vm;
}

QemuMicrovm::~QemuMicrovm() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

bool QemuMicrovm::ReadConsole(absl::Duration timeout) {
  struct pollfd pfd = {console_.get(), POLLIN, 0};
  int ready = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (ready <= 0) return true;
  char buffer[65536];
  ssize_t n = ::read(console_.get(), buffer, sizeof(buffer));
  if (n <= 0) return false;
  if (!first_output_.has_value()) first_output_ = absl::Now();
  for (ssize_t i = 0; i < n; ++i) {
    if (buffer[i] != '\r') output_.push_back(buffer[i]);
  }
  return true;
}

absl::StatusOr<absl::Time> QemuMicrovm::WaitFirstOutput(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!first_output_.has_value()) {
    if (absl::Now() > deadline) return absl::DeadlineExceededError("QEMU: no console output");
    if (!ReadConsole(absl::Milliseconds(MillisecondsLeft(deadline)))) {
      return absl::InternalError(absl::StrCat("QEMU exited without output: ", LastLogLine()));
    }
  }
  return *first_output_;
}

absl::StatusOr<absl::Time> QemuMicrovm::WaitOutput(const std::string& text, size_t from,
                                                   absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (output_.find(text, std::min(from, output_.size())) == std::string::npos) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("QEMU: no \"", text, "\" on the console"));
    }
    if (!ReadConsole(absl::Milliseconds(std::min(MillisecondsLeft(deadline), 100)))) {
      return absl::InternalError(
          absl::StrCat("QEMU exited before \"", text, "\": ", LastLogLine()));
    }
  }
  return absl::Now();
}

absl::Status QemuMicrovm::ConnectQmp(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (options_.qmp_socket.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("QMP socket path too long: ", options_.qmp_socket));
  }
  std::strcpy(address.sun_path, options_.qmp_socket.c_str());
  // QEMU creates the socket during start-up: retry until it listens.
  while (true) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return ErrnoStatus("socket for QMP");
    if (::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&address), sizeof(address)) == 0) {
      qmp_ = std::move(fd);
      break;
    }
    if (absl::Now() > deadline) return ErrnoStatus(absl::StrCat("connect ", options_.qmp_socket));
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("QEMU exited at start-up: ", LastLogLine()));
    }
    absl::SleepFor(absl::Microseconds(200));
  }
  ASSIGN_OR_RETURN(std::string greeting, QmpLine(deadline));
  if (!absl::StrContains(greeting, "\"QMP\"")) {
    return absl::InternalError(absl::StrCat("QMP greeting: ", greeting));
  }
  std::string command = "{\"execute\": \"qmp_capabilities\"}\n";
  if (::write(qmp_.get(), command.data(), command.size()) != static_cast<ssize_t>(command.size())) {
    return ErrnoStatus("write to QMP");
  }
  ASSIGN_OR_RETURN(std::string reply, QmpLine(deadline));
  if (!absl::StrContains(reply, "\"return\"")) {
    return absl::InternalError(absl::StrCat("qmp_capabilities: ", reply));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> QemuMicrovm::QmpLine(absl::Time deadline) {
  while (true) {
    size_t newline = qmp_buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = qmp_buffer_.substr(0, newline);
      qmp_buffer_.erase(0, newline + 1);
      return line;
    }
    struct pollfd pfd = {qmp_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, MillisecondsLeft(deadline));
    if (ready == 0) return absl::DeadlineExceededError("QMP: no reply");
    if (ready < 0) return ErrnoStatus("poll QMP");
    char buffer[4096];
    ssize_t n = ::read(qmp_.get(), buffer, sizeof(buffer));
    if (n <= 0) return absl::InternalError(absl::StrCat("QMP closed: ", LastLogLine()));
    qmp_buffer_.append(buffer, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> QemuMicrovm::Qmp(const std::string& command, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  if (!qmp_.valid()) RETURN_IF_ERROR(ConnectQmp(timeout));
  std::string line = command + "\n";
  if (::write(qmp_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return ErrnoStatus("write to QMP");
  }
  while (true) {
    ASSIGN_OR_RETURN(std::string reply, QmpLine(deadline));
    if (absl::StartsWith(reply, "{\"event\"")) continue;
    if (absl::StrContains(reply, "\"error\"")) {
      return absl::InternalError(absl::StrCat("QMP ", command, ": ", reply));
    }
    return reply;
  }
}

std::string QemuMicrovm::LastLogLine() const {
  std::ifstream log(options_.log);
  std::string line, last = "(QEMU wrote nothing to stderr)";
  while (std::getline(log, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

std::string QemuVersion() {
  FILE* pipe = ::popen("qemu-system-x86_64 --version 2>/dev/null", "r");
  if (pipe == nullptr) return "qemu-system-x86_64 not found";
  char line[256] = {};
  if (std::fgets(line, sizeof(line), pipe) == nullptr) line[0] = 0;
  ::pclose(pipe);
  std::string version = line;
  while (!version.empty() && version.back() == '\n') version.pop_back();
  return version.empty() ? "qemu-system-x86_64 not found" : version;
}

}  // namespace hearth::bench
