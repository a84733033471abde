// QEMU's microvm machine running the Hearth test guest, for benchmarks that
// compare Hearth with it: one qemu-system-x86_64 process with the flags of
// bench/io.py (PVH boot, serial console on stdout, isa-debug-exit, no ACPI),
// its console read from a pipe and its QMP monitor on a unix socket.
// Nothing here asserts; every failure is a Status naming the step.
#ifndef HEARTH_BENCH_QEMU_MICROVM_H_
#define HEARTH_BENCH_QEMU_MICROVM_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace hearth::bench {

struct QemuOptions {
  std::string guest;  // the test guest ELF (entered through its PVH note)
  uint32_t mem_mib = 128;
  std::string append;              // kernel command line
  std::string qmp_socket;          // path of the QMP unix socket QEMU listens on
  std::string log;                 // QEMU's stderr is appended here
  std::vector<std::string> extra;  // e.g. {"-incoming", "exec:cat state"}
};

class QemuMicrovm {
 public:
  // Spawns QEMU; started() is taken just before the spawn.
  static absl::StatusOr<std::unique_ptr<QemuMicrovm>> Start(const QemuOptions& options);
  ~QemuMicrovm();  // SIGKILLs QEMU if it still runs, and reaps it
  QemuMicrovm(const QemuMicrovm&) = delete;
  QemuMicrovm& operator=(const QemuMicrovm&) = delete;

  absl::Time started() const { return started_; }
  const std::string& output() const { return output_; }  // console so far, '\r' removed
  // When the first console byte was read (after waiting for it).
  absl::StatusOr<absl::Time> WaitFirstOutput(absl::Duration timeout);
  // Reads the console until `text` occurs at or after offset `from`;
  // returns when it was read.
  absl::StatusOr<absl::Time> WaitOutput(const std::string& text, size_t from,
                                        absl::Duration timeout);

  // Sends one QMP command (a JSON object) and returns QEMU's reply line,
  // skipping asynchronous events; an {"error": ...} reply is an error. The
  // first call connects (retrying until QEMU listens) and negotiates
  // capabilities.
  absl::StatusOr<std::string> Qmp(const std::string& command,
                                  absl::Duration timeout = absl::Seconds(60));

  // The last line QEMU wrote to its log (stderr), for error messages.
  std::string LastLogLine() const;

 private:
  explicit QemuMicrovm(QemuOptions options) : options_(std::move(options)) {}
  // Reads what the console pipe has within `timeout`; false at EOF.
  bool ReadConsole(absl::Duration timeout);
  absl::Status ConnectQmp(absl::Duration timeout);
  absl::StatusOr<std::string> QmpLine(absl::Time deadline);

  QemuOptions options_;
  pid_t pid_ = -1;
  absl::Time started_;
  UniqueFd console_;
  std::string output_;
  std::optional<absl::Time> first_output_;
  UniqueFd qmp_;
  std::string qmp_buffer_;
};

// "QEMU emulator version 7.2.22 (...)": the first line of --version.
std::string QemuVersion();

}  // namespace hearth::bench

#endif  // HEARTH_BENCH_QEMU_MICROVM_H_
