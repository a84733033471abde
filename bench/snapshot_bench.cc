// Snapshots through hearthd's gRPC API, with real (jailed, when root) VMMs
// and the test guest's `counter` scenario, next to QEMU microvm saving and
// restoring the same guest through migration to a file:
//   1. CreateSnapshot time and file sizes (apparent, and allocated =
//      st_blocks * 512) for each guest size, Full and Diff. The guest writes
//      a pattern over half its RAM at start (hearth.touch_mib) and rewrites
//      kRetouchKib of it every tick (hearth.retouch_kib). Diff: the VM has
//      machine_config.track_dirty_pages; Full, resume, kDiffInterval of
//      running, pause, Diff.
//   2. Restore: CreateVm (empty) + LoadSnapshot (resume_vm) of the Full
//      snapshot, to the RPC's return (running) and to the first console
//      output, interleaved with cold boots of the same guest (CreateVm with
//      start = true).
//   3. CloneVm of N clones (resumed): VMs/s, and per clone the time from the
//      CloneVm call to RUNNING and to its first console output.
//   4. QEMU microvm, same guest and memory: QMP stop + migrate to
//      "exec:cat > file" (QEMU 7.2 has no file: URI), alternating with
//      Hearth's Full snapshots; restore with -incoming "exec:cat file" +
//      cont, from process start to paused, running and first output; a
//      cold boot to first output.
// "First output" of a Hearth VM is when this client receives the WatchVms
// event in which hearthd reports the VM's first console byte. Every
// snapshot file is read back from the page cache (just written). Prints
// numbers; asserts nothing. A failed step prints why and exits 1.
//
//   bench/snapshot [--runs=N] [--sizes=128,1024] [--clones=10,20] [--no_qemu] [--no_jail]
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/qemu_microvm.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "tests/testing/agent.h"
#include "tests/testing/host.h"

namespace hearth::bench {
namespace {

namespace api = ::hearth::v1;
using testing::Agent;

constexpr int kTickMs = 10;
constexpr int kRetouchKib = 128;
constexpr absl::Duration kDiffInterval = absl::Milliseconds(500);
constexpr absl::Duration kTimeout = absl::Seconds(120);
// Saves of each paused guest, alternating Hearth Full / QEMU migrate, each
// rewriting its own file. On this host (a VM itself, with virtio-balloon
// free page reporting, ext4 with large folios) writes of 512 KiB and more
// get large page-cache folios from memory the VM has handed back to its own
// host, whose first touch is slow: 512 MiB in 4 MiB pwrites ~1.2 s, in
// 128 KiB pwrites ~0.1 s. Hearth writes memory in runs of up to 4 MiB,
// QEMU's `cat` in 128 KiB: a 1st save pays, a 2nd reuses the folios its
// truncation freed. Both are printed.
constexpr int kSaves = 2;

struct Options {
  int runs = 5;
  std::vector<uint32_t> sizes_mib = {128, 1024};
  std::vector<int> clones = {10, 20};
  bool qemu = true;
  bool jail = true;  // jailed VMMs (their cgroup limits included) when root
};

// ---------------------------------------------------------------------------
// Numbers.

// Nearest-rank percentile (q in (0, 1]): of 5 values, p50 is the 3rd and p90
// the 5th.
double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }
double Mib(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

struct FileSize {
  uint64_t apparent = 0;
  uint64_t allocated = 0;  // st_blocks * 512
};

absl::StatusOr<FileSize> SizeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(absl::StrCat("stat ", path));
  return FileSize{static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_blocks) * 512};
}

// ---------------------------------------------------------------------------
// hearthd's API.

template <typename Request, typename Response>
absl::Status Rpc(const std::string& what,
                 grpc::Status (api::Hearth::Stub::*method)(grpc::ClientContext*, const Request&,
                                                           Response*),
                 api::Hearth::Stub* stub, const Request& request, Response* response) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kTimeout));
  grpc::Status status = (stub->*method)(&context, request, response);
  if (status.ok()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, ": gRPC code ", status.error_code(), ": ", status.error_message()));
}

absl::Status SetRunState(api::Hearth::Stub* stub, const std::string& id, const std::string& state) {
  api::PatchVmRequest request;
  request.set_vm_id(id);
  request.mutable_vm_state()->set_state(state);
  api::Vm vm;
  return Rpc(absl::StrCat("PatchVm ", state, " ", id), &api::Hearth::Stub::PatchVm, stub, request,
             &vm);
}

absl::Status DeleteVm(api::Hearth::Stub* stub, const std::string& id) {
  api::DeleteVmRequest request;
  request.set_vm_id(id);
  request.set_force(true);
  api::DeleteVmResponse response;
  return Rpc(absl::StrCat("DeleteVm ", id), &api::Hearth::Stub::DeleteVm, stub, request, &response);
}

void DeleteAll(api::Hearth::Stub* stub) {
  grpc::ClientContext context;
  api::ListVmsRequest request;
  request.set_page_size(1000);
  api::ListVmsResponse list;
  (void)stub->ListVms(&context, request, &list);
  for (const api::Vm& vm : list.vms()) (void)DeleteVm(stub, vm.vm_id());
}

// Every VM's first RUNNING state and first console output, as a WatchVms
// client sees them: the times this client received those events.
class VmWatch {
 public:
  static absl::StatusOr<std::unique_ptr<VmWatch>> Start(api::Hearth::Stub* stub) {
    std::unique_ptr<VmWatch> watch(new VmWatch());
    watch->reader_ = stub->WatchVms(&watch->context_, api::WatchVmsRequest());
    watch->thread_ = std::thread([w = watch.get()] { w->Read(); });
    absl::MutexLock lock(&watch->mutex_);
    auto ready = [w = watch.get()]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mutex_) {
      return w->bookmarked_ || w->ended_;
    };
    if (!watch->mutex_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(10)) ||
        !watch->bookmarked_) {
      return absl::InternalError("WatchVms: no initial BOOKMARK");
    }
    return watch;
  }
  ~VmWatch() {
    context_.TryCancel();
    thread_.join();
  }

  absl::StatusOr<absl::Time> Running(const std::string& id) { return Wait(id, false); }
  absl::StatusOr<absl::Time> FirstOutput(const std::string& id) { return Wait(id, true); }

 private:
  struct Seen {
    std::optional<absl::Time> running;
    std::optional<absl::Time> first_output;
    std::string ended;  // "FAILED: reason" once the VM stopped or failed
  };

  VmWatch() = default;

  void Read() {
    api::WatchEvent event;
    while (reader_->Read(&event)) {
      absl::Time now = absl::Now();
      absl::MutexLock lock(&mutex_);
      if (event.type() == api::WatchEvent::BOOKMARK) {
        bookmarked_ = true;
        continue;
      }
      const api::Vm& vm = event.vm();
      Seen& seen = seen_[vm.vm_id()];
      if (vm.state() == api::VM_STATE_RUNNING && !seen.running) seen.running = now;
      if (vm.status().boot_timing().start_to_first_output_us() != 0 && !seen.first_output) {
        seen.first_output = now;
      }
      if (vm.state() == api::VM_STATE_FAILED || vm.state() == api::VM_STATE_STOPPED) {
        seen.ended = absl::StrCat(api::VmState_Name(vm.state()), ": ", vm.status().reason());
      }
    }
    (void)reader_->Finish();
    absl::MutexLock lock(&mutex_);
    ended_ = true;
  }

  absl::StatusOr<absl::Time> Wait(const std::string& id, bool output) {
    absl::MutexLock lock(&mutex_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
      const Seen& s = seen_[id];
      return ended_ || !s.ended.empty() || (output ? s.first_output : s.running).has_value();
    };
    mutex_.AwaitWithTimeout(absl::Condition(&done), kTimeout);
    const Seen& s = seen_[id];
    std::optional<absl::Time> when = output ? s.first_output : s.running;
    if (when) return *when;
    if (!s.ended.empty()) return absl::InternalError(absl::StrCat("vm ", id, " ended: ", s.ended));
    if (ended_) return absl::InternalError("the WatchVms stream ended");
    return absl::DeadlineExceededError(absl::StrCat("vm ", id, ": no ",
                                                    output ? "console output" : "RUNNING",
                                                    " within ", absl::FormatDuration(kTimeout)));
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<api::WatchEvent>> reader_;
  absl::Mutex mutex_;
  std::map<std::string, Seen> seen_ ABSL_GUARDED_BY(mutex_);
  bool bookmarked_ ABSL_GUARDED_BY(mutex_) = false;
  bool ended_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread thread_;
};

// A VM's console from the start of hearthd's buffer until `text` appears:
// the output so far ('\r' removed) and when this client read `text`.
struct ConsoleText {
  std::string text;
  absl::Time seen;
};

absl::StatusOr<ConsoleText> ConsoleUntil(api::Hearth::Stub* stub, const std::string& id,
                                         const std::string& text) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kTimeout));
  auto stream = stub->StreamConsole(&context);
  api::ConsoleRequest open;
  open.mutable_open()->set_vm_id(id);
  open.mutable_open()->set_replay(true);
  stream->Write(open);
  ConsoleText result;
  api::ConsoleChunk chunk;
  bool found = false;
  while (!found && stream->Read(&chunk)) {
    for (char c : chunk.data()) {
      if (c != '\r') result.text.push_back(c);
    }
    found = absl::StrContains(result.text, text);
  }
  result.seen = absl::Now();
  context.TryCancel();
  while (stream->Read(&chunk)) {
  }
  grpc::Status status = stream->Finish();
  if (!found) {
    return absl::InternalError(absl::StrCat("vm ", id, ": no \"", absl::CEscape(text),
                                            "\" on the console (", status.error_message(),
                                            "); it printed:\n", result.text));
  }
  return result;
}

// ---------------------------------------------------------------------------
// What is measured, per guest size.

struct SnapshotStats {
  double ms = 0;
  FileSize state;
  FileSize memory;
};

struct SizeResults {
  uint32_t mem_mib = 0;
  uint32_t touch_mib = 0;
  std::string state_path;  // the Full snapshot, restored and cloned
  std::string memory_path;
  std::vector<SnapshotStats> full;  // kSaves of them
  SnapshotStats diff;
  // Hearth restore (ms from the CreateVm call, or from the LoadSnapshot call).
  std::vector<double> create_empty, load_rpc, restore_running, restore_output, load_output;
  // Hearth cold boot (ms from the CreateVm call).
  std::vector<double> boot_running, boot_output, boot_touched;
  // QEMU (ms from process start, save from the migrate command).
  std::string qemu_skipped;          // why there are no QEMU save/restore numbers
  std::string qemu_boot_skipped;     // why there are no QEMU cold boot numbers
  std::vector<double> qemu_save_ms;  // kSaves of them
  FileSize qemu_file;
  std::vector<double> qemu_paused, qemu_running, qemu_output, qemu_boot_output;
};

struct CloneResults {
  int clones = 0;
  double call_ms = 0;           // the CloneVm RPC, all clones running
  std::vector<double> running;  // per clone, ms from the CloneVm call
  std::vector<double> output;
};

struct Bench {
  Options options;
  Agent* agent = nullptr;
  api::Hearth::Stub* stub = nullptr;
  VmWatch* watch = nullptr;
  std::string dir;
  std::string kernel;  // guest.elf inside the agent's image root
};

std::string BootArgs(uint32_t touch_mib) {
  return absl::StrCat("console=ttyS0 hearth.test=counter hearth.tick_ms=", kTickMs,
                      " hearth.touch_mib=", touch_mib, " hearth.retouch_kib=", kRetouchKib);
}

api::VmConfig CounterConfig(const Bench& b, const SizeResults& r, bool track_dirty_pages) {
  api::VmConfig config;
  config.mutable_boot_source()->set_kernel_image_path(b.kernel);
  config.mutable_boot_source()->set_boot_args(BootArgs(r.touch_mib));
  config.mutable_machine_config()->set_vcpu_count(1);
  config.mutable_machine_config()->set_mem_size_mib(r.mem_mib);
  config.mutable_machine_config()->set_track_dirty_pages(track_dirty_pages);
  return config;
}

// ---------------------------------------------------------------------------
// Hearth.

absl::StatusOr<SnapshotStats> TakeSnapshot(const Bench& b, const std::string& id,
                                           const std::string& type, const std::string& state,
                                           const std::string& memory) {
  api::CreateSnapshotRequest request;
  request.set_vm_id(id);
  request.mutable_params()->set_snapshot_type(type);
  request.mutable_params()->set_snapshot_path(state);
  request.mutable_params()->set_mem_file_path(memory);
  api::CreateSnapshotResponse response;
  absl::Time start = absl::Now();
  RETURN_IF_ERROR(Rpc(absl::StrCat("CreateSnapshot ", type, " of ", id),
                      &api::Hearth::Stub::CreateSnapshot, b.stub, request, &response));
  SnapshotStats stats;
  stats.ms = Ms(absl::Now() - start);
  ASSIGN_OR_RETURN(stats.state, SizeOf(state));
  ASSIGN_OR_RETURN(stats.memory, SizeOf(memory));
  return stats;
}

// The VM the snapshots are taken of: booted with dirty page tracking, its
// guest has touched its memory and ticks; left PAUSED.
absl::StatusOr<std::string> HearthOrigin(const Bench& b, SizeResults& r) {
  const std::string id = absl::StrCat("origin-", r.mem_mib);
  api::CreateVmRequest create;
  create.set_vm_id(id);
  *create.mutable_config() = CounterConfig(b, r, /*track_dirty_pages=*/true);
  create.set_start(true);
  api::Vm vm;
  RETURN_IF_ERROR(
      Rpc(absl::StrCat("CreateVm ", id), &api::Hearth::Stub::CreateVm, b.stub, create, &vm));
  RETURN_IF_ERROR(ConsoleUntil(b.stub, id, "counter: n=5\n").status());
  RETURN_IF_ERROR(SetRunState(b.stub, id, "Paused"));
  r.state_path = absl::StrCat(b.agent->images(), "/full-", r.mem_mib, ".state");
  r.memory_path = absl::StrCat(b.agent->images(), "/full-", r.mem_mib, ".memory");
  return id;
}

// After the Full snapshots: run kDiffInterval, pause, Diff; the VM goes.
// The Full files stay for the restores and clones.
absl::Status HearthDiff(const Bench& b, SizeResults& r, const std::string& id) {
  RETURN_IF_ERROR(SetRunState(b.stub, id, "Resumed"));
  absl::SleepFor(kDiffInterval);
  RETURN_IF_ERROR(SetRunState(b.stub, id, "Paused"));
  std::string diff_state = absl::StrCat(b.agent->images(), "/diff-", r.mem_mib, ".state");
  std::string diff_memory = absl::StrCat(b.agent->images(), "/diff-", r.mem_mib, ".memory");
  ASSIGN_OR_RETURN(r.diff, TakeSnapshot(b, id, "Diff", diff_state, diff_memory));
  ::unlink(diff_state.c_str());
  ::unlink(diff_memory.c_str());
  return DeleteVm(b.stub, id);
}

absl::Status HearthRestoreOnce(const Bench& b, SizeResults& r, int run) {
  const std::string id = absl::StrCat("restore-", r.mem_mib, "-", run);
  api::CreateVmRequest create;
  create.set_vm_id(id);
  api::Vm vm;
  absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(
      Rpc(absl::StrCat("CreateVm ", id), &api::Hearth::Stub::CreateVm, b.stub, create, &vm));
  absl::Time created = absl::Now();
  api::LoadSnapshotRequest load;
  load.set_vm_id(id);
  load.mutable_params()->set_snapshot_path(r.state_path);
  load.mutable_params()->mutable_mem_backend()->set_backend_type("File");
  load.mutable_params()->mutable_mem_backend()->set_backend_path(r.memory_path);
  load.mutable_params()->set_resume_vm(true);
  api::LoadSnapshotResponse loaded;
  RETURN_IF_ERROR(Rpc(absl::StrCat("LoadSnapshot into ", id), &api::Hearth::Stub::LoadSnapshot,
                      b.stub, load, &loaded));
  absl::Time running = absl::Now();
  if (loaded.vm().state() != api::VM_STATE_RUNNING) {
    return absl::InternalError(absl::StrCat("LoadSnapshot with resume_vm left ", id, " ",
                                            api::VmState_Name(loaded.vm().state())));
  }
  ASSIGN_OR_RETURN(absl::Time first, b.watch->FirstOutput(id));
  ASSIGN_OR_RETURN(ConsoleText console, ConsoleUntil(b.stub, id, "counter: n="));
  if (absl::StrContains(console.text, "counter: boot")) {
    return absl::InternalError(
        absl::StrCat(id, ": the restored guest booted again:\n", console.text));
  }
  r.create_empty.push_back(Ms(created - t0));
  r.load_rpc.push_back(Ms(running - created));
  r.restore_running.push_back(Ms(running - t0));
  r.restore_output.push_back(Ms(first - t0));
  r.load_output.push_back(Ms(first - created));
  return DeleteVm(b.stub, id);
}

absl::Status HearthColdBootOnce(const Bench& b, SizeResults& r, int run) {
  const std::string id = absl::StrCat("boot-", r.mem_mib, "-", run);
  api::CreateVmRequest create;
  create.set_vm_id(id);
  *create.mutable_config() = CounterConfig(b, r, /*track_dirty_pages=*/false);
  create.set_start(true);
  api::Vm vm;
  absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(
      Rpc(absl::StrCat("CreateVm ", id), &api::Hearth::Stub::CreateVm, b.stub, create, &vm));
  absl::Time running = absl::Now();
  ASSIGN_OR_RETURN(absl::Time first, b.watch->FirstOutput(id));
  ASSIGN_OR_RETURN(ConsoleText touched, ConsoleUntil(b.stub, id, "counter: touched"));
  r.boot_running.push_back(Ms(running - t0));
  r.boot_output.push_back(Ms(first - t0));
  r.boot_touched.push_back(Ms(touched.seen - t0));
  return DeleteVm(b.stub, id);
}

absl::StatusOr<CloneResults> HearthClones(const Bench& b, const SizeResults& r, int clones) {
  api::CloneVmRequest request;
  request.set_snapshot_path(r.state_path);
  request.mutable_mem_backend()->set_backend_type("File");
  request.mutable_mem_backend()->set_backend_path(r.memory_path);
  std::vector<std::string> ids;
  for (int i = 0; i < clones; ++i) {
    api::CloneSpec* spec = request.add_clones();
    ids.push_back(absl::StrCat("clone", clones, "-", i));
    spec->set_vm_id(ids.back());
    spec->set_resume_vm(true);
  }
  api::CloneVmResponse response;
  absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(Rpc(absl::StrCat("CloneVm of ", clones), &api::Hearth::Stub::CloneVm, b.stub,
                      request, &response));
  CloneResults result;
  result.clones = clones;
  result.call_ms = Ms(absl::Now() - t0);
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(absl::Time running, b.watch->Running(id));
    ASSIGN_OR_RETURN(absl::Time first, b.watch->FirstOutput(id));
    result.running.push_back(Ms(running - t0));
    result.output.push_back(Ms(first - t0));
  }
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(ConsoleText console, ConsoleUntil(b.stub, id, "counter: n="));
    if (absl::StrContains(console.text, "counter: boot")) {
      return absl::InternalError(absl::StrCat(id, ": the clone booted again:\n", console.text));
    }
  }
  for (const std::string& id : ids) RETURN_IF_ERROR(DeleteVm(b.stub, id));
  return result;
}

// ---------------------------------------------------------------------------
// QEMU microvm.

QemuOptions QemuFor(const Bench& b, const SizeResults& r) {
  QemuOptions o;
  o.guest = testing::Runfile("tests/guest/guest.elf");
  o.mem_mib = r.mem_mib;
  o.append = BootArgs(r.touch_mib);
  o.qmp_socket = b.dir + "/qmp.sock";
  o.log = b.dir + "/qemu.log";
  return o;
}

std::string QemuStatePath(const Bench& b, const SizeResults& r) {
  return absl::StrCat(b.dir, "/qemu-", r.mem_mib, ".state");
}

// QEMU booted as HearthOrigin boots its VM (no dirty tracking needed),
// stopped, with migration unthrottled: QEMU caps it at 128 MiB/s by default
// (max-bandwidth); to a file on the same host, nothing should.
absl::StatusOr<std::unique_ptr<QemuMicrovm>> QemuOrigin(const Bench& b, const SizeResults& r) {
  ASSIGN_OR_RETURN(std::unique_ptr<QemuMicrovm> vm, QemuMicrovm::Start(QemuFor(b, r)));
  RETURN_IF_ERROR(vm->WaitOutput("counter: n=5\n", 0, kTimeout).status());
  RETURN_IF_ERROR(vm->Qmp(R"({"execute": "stop"})").status());
  RETURN_IF_ERROR(
      vm->Qmp(
            R"({"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 107374182400}})")
          .status());
  return vm;
}

// One save of the stopped VM to "exec:cat > file", timed from the migrate
// command to "completed".
absl::Status QemuSaveOnce(const Bench& b, SizeResults& r, QemuMicrovm& vm) {
  const std::string path = QemuStatePath(b, r);
  if (!r.qemu_save_ms.empty()) {
    // A completed migration leaves QEMU "postmigrate"; cont runs the guest
    // again (for a moment) so that it can be stopped and saved again.
    RETURN_IF_ERROR(vm.Qmp(R"({"execute": "cont"})").status());
    RETURN_IF_ERROR(vm.Qmp(R"({"execute": "stop"})").status());
  }
  absl::Time start = absl::Now();
  RETURN_IF_ERROR(vm.Qmp(absl::StrCat(R"({"execute": "migrate", "arguments": {"uri": "exec:cat > )",
                                      path, R"("}})"))
                      .status());
  while (true) {
    ASSIGN_OR_RETURN(std::string status, vm.Qmp(R"({"execute": "query-migrate"})"));
    if (absl::StrContains(status, R"("status": "completed")")) break;
    if (absl::StrContains(status, R"("status": "failed")") ||
        absl::StrContains(status, R"("status": "cancelled")")) {
      return absl::InternalError(absl::StrCat("QEMU migrate to ", path, ": ", status));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  r.qemu_save_ms.push_back(Ms(absl::Now() - start));
  ASSIGN_OR_RETURN(r.qemu_file, SizeOf(path));
  return absl::OkStatus();
}

// -incoming "exec:cat file"; the stream says the VM was paused, so QEMU
// stays paused after loading it until `cont`.
absl::Status QemuRestoreOnce(const Bench& b, SizeResults& r) {
  QemuOptions options = QemuFor(b, r);
  options.extra = {"-incoming", absl::StrCat("exec:cat ", QemuStatePath(b, r))};
  ASSIGN_OR_RETURN(std::unique_ptr<QemuMicrovm> vm, QemuMicrovm::Start(options));
  while (true) {
    ASSIGN_OR_RETURN(std::string status, vm->Qmp(R"({"execute": "query-status"})"));
    if (absl::StrContains(status, R"("status": "paused")")) break;
    if (!absl::StrContains(status, R"("status": "inmigrate")")) {
      return absl::InternalError(absl::StrCat("QEMU -incoming: ", status, "; ", vm->LastLogLine()));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  absl::Time paused = absl::Now();
  RETURN_IF_ERROR(vm->Qmp(R"({"execute": "cont"})").status());
  absl::Time running = absl::Now();
  ASSIGN_OR_RETURN(absl::Time first, vm->WaitFirstOutput(kTimeout));
  RETURN_IF_ERROR(vm->WaitOutput("counter: n=", 0, kTimeout).status());
  if (absl::StrContains(vm->output(), "counter: boot")) {
    return absl::InternalError(
        absl::StrCat("QEMU: the restored guest booted again:\n", vm->output()));
  }
  r.qemu_paused.push_back(Ms(paused - vm->started()));
  r.qemu_running.push_back(Ms(running - vm->started()));
  r.qemu_output.push_back(Ms(first - vm->started()));
  return absl::OkStatus();
}

absl::Status QemuColdBootOnce(const Bench& b, SizeResults& r) {
  ASSIGN_OR_RETURN(std::unique_ptr<QemuMicrovm> vm, QemuMicrovm::Start(QemuFor(b, r)));
  ASSIGN_OR_RETURN(absl::Time first, vm->WaitFirstOutput(kTimeout));
  r.qemu_boot_output.push_back(Ms(first - vm->started()));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Output.

std::string P50P90(const std::vector<double>& ms) {
  if (ms.empty()) return absl::StrFormat("%17s", "-");
  return absl::StrFormat("%8.1f %8.1f", Percentile(ms, 0.5), Percentile(ms, 0.9));
}

void PrintSnapshotTable(const std::vector<SizeResults>& sizes) {
  std::printf(
      "\n1. Snapshot create, ms: %d saves of the same paused state, Hearth and QEMU "
      "alternating (a 1st save may pay for host memory, see kSaves); files: state KiB, "
      "memory MiB apparent / allocated\n",
      kSaves);
  std::printf("%-9s %-44s %9s %9s %10s %19s\n", "guest", "what", "1st save", "2nd save",
              "state KiB", "memory MiB");
  auto line = [](const std::string& guest, const std::string& what, const std::vector<double>& ms,
                 const std::string& state_kib, const FileSize& memory) {
    std::string first = ms.empty() ? "-" : absl::StrFormat("%.1f", ms[0]);
    std::string second = ms.size() < 2 ? "-" : absl::StrFormat("%.1f", ms[1]);
    std::printf("%-9s %-44s %9s %9s %10s %9.1f / %7.1f\n", guest.c_str(), what.c_str(),
                first.c_str(), second.c_str(), state_kib.c_str(), Mib(memory.apparent),
                Mib(memory.allocated));
  };
  for (const SizeResults& r : sizes) {
    std::string guest = absl::StrCat(r.mem_mib, " MiB");
    std::vector<double> full_ms;
    for (const SnapshotStats& f : r.full) full_ms.push_back(f.ms);
    line(guest, absl::StrCat("hearth Full (", r.touch_mib, " MiB touched, paused)"), full_ms,
         absl::StrFormat("%.1f", r.full.back().state.apparent / 1024.0), r.full.back().memory);
    line(guest,
         absl::StrCat("hearth Diff (", absl::FormatDuration(kDiffInterval), " after the Full)"),
         {r.diff.ms}, absl::StrFormat("%.1f", r.diff.state.apparent / 1024.0), r.diff.memory);
    if (r.qemu_save_ms.empty()) continue;
    line(guest, "qemu stop + migrate to \"exec:cat > file\"", r.qemu_save_ms, "-", r.qemu_file);
    std::printf("%-9s %-44s", guest.c_str(), "hearth Full / qemu save");
    for (size_t i = 0; i < r.qemu_save_ms.size() && i < r.full.size(); ++i) {
      std::printf(" %9.2f", r.full[i].ms / r.qemu_save_ms[i]);
    }
    std::printf("\n");
  }
  std::printf("Diff: the guest rewrites %d KiB every %d ms tick (~%.1f MiB in %s).\n", kRetouchKib,
              kTickMs, kRetouchKib / 1024.0 * absl::ToDoubleMilliseconds(kDiffInterval) / kTickMs,
              absl::FormatDuration(kDiffInterval).c_str());
}

void PrintRestoreTable(const std::vector<SizeResults>& sizes, int runs) {
  std::printf("\n2. Restore vs cold boot, ms, %d runs each: p50 p90\n", runs);
  std::printf("%-52s", "");
  for (const SizeResults& r : sizes) std::printf(" %17s", absl::StrCat(r.mem_mib, " MiB").c_str());
  std::printf("\n");
  auto row = [&](const char* name, std::vector<double> SizeResults::*field) {
    std::printf("%-52s", name);
    for (const SizeResults& r : sizes) std::printf(" %s", P50P90(r.*field).c_str());
    std::printf("\n");
  };
  row("hearth restore: CreateVm (empty; VMM spawned)", &SizeResults::create_empty);
  row("hearth restore: LoadSnapshot RPC (VMM up, resume)", &SizeResults::load_rpc);
  row("hearth restore: CreateVm -> running (RPC returned)", &SizeResults::restore_running);
  row("hearth restore: CreateVm -> first output", &SizeResults::restore_output);
  row("hearth restore: LoadSnapshot -> first output", &SizeResults::load_output);
  row("hearth cold boot: CreateVm(start) -> running", &SizeResults::boot_running);
  row("hearth cold boot: CreateVm(start) -> first output", &SizeResults::boot_output);
  row("hearth cold boot: CreateVm(start) -> memory touched", &SizeResults::boot_touched);
  row("qemu restore: start -> incoming loaded (paused)", &SizeResults::qemu_paused);
  row("qemu restore: start -> running (cont returned)", &SizeResults::qemu_running);
  row("qemu restore: start -> first output", &SizeResults::qemu_output);
  row("qemu cold boot: start -> first output", &SizeResults::qemu_boot_output);
  for (const SizeResults& r : sizes) {
    auto ratio = [](const std::vector<double>& hearth, const std::vector<double>& qemu) {
      if (hearth.empty() || qemu.empty()) return std::string("-");
      return absl::StrFormat("%.2f", Percentile(hearth, 0.5) / Percentile(qemu, 0.5));
    };
    std::printf(
        "%4u MiB, p50 hearth/qemu: restore to running %s, restore to first output %s, "
        "cold boot to first output %s\n",
        r.mem_mib, ratio(r.restore_running, r.qemu_running).c_str(),
        ratio(r.restore_output, r.qemu_output).c_str(),
        ratio(r.boot_output, r.qemu_boot_output).c_str());
  }
}

void PrintCloneTable(const std::vector<CloneResults>& clones, uint32_t mem_mib) {
  std::printf(
      "\n3. CloneVm (resume_vm) from the %u MiB Full snapshot; per clone ms from the "
      "CloneVm call: p50 p90 max\n",
      mem_mib);
  std::printf("%6s %12s %8s %26s %26s\n", "clones", "CloneVm ms", "VMs/s", "-> running",
              "-> first output");
  for (const CloneResults& c : clones) {
    std::printf("%6d %12.1f %8.1f %s %8.1f %s %8.1f\n", c.clones, c.call_ms,
                c.clones / (c.call_ms / 1000.0), P50P90(c.running).c_str(),
                Percentile(c.running, 1.0), P50P90(c.output).c_str(), Percentile(c.output, 1.0));
  }
}

// ---------------------------------------------------------------------------

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options options;
  auto numbers = [](absl::string_view list, auto* out) {
    out->clear();
    for (absl::string_view word : absl::StrSplit(list, ',')) {
      int value;
      if (!absl::SimpleAtoi(word, &value) || value <= 0) return false;
      out->push_back(value);
    }
    return !out->empty();
  };
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    bool ok = true;
    if (absl::ConsumePrefix(&arg, "--runs=")) {
      ok = absl::SimpleAtoi(arg, &options.runs) && options.runs > 0;
    } else if (absl::ConsumePrefix(&arg, "--sizes=")) {
      ok = numbers(arg, &options.sizes_mib);
    } else if (absl::ConsumePrefix(&arg, "--clones=")) {
      ok = numbers(arg, &options.clones);
    } else if (arg == "--no_qemu") {
      options.qemu = false;
    } else if (arg == "--no_jail") {
      options.jail = false;
    } else {
      ok = false;
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad argument \"", argv[i],
                       "\"; usage: snapshot_bench [--runs=N] [--sizes=128,1024] [--clones=10,20] "
                       "[--no_qemu] [--no_jail]"));
    }
  }
  return options;
}

absl::Status CopyGuest(const std::string& to) {
  std::ifstream in(testing::Runfile("tests/guest/guest.elf"), std::ios::binary);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
  if (!in || !out) return absl::InternalError(absl::StrCat("copying guest.elf to ", to));
  return absl::OkStatus();
}

// Hearth's Full snapshots and QEMU's saves of the same guest, alternating
// (see kSaves), then Hearth's Diff. QEMU that cannot save here is reported
// once and left out.
absl::Status SaveBoth(const Bench& b, SizeResults& r) {
  ASSIGN_OR_RETURN(std::string id, HearthOrigin(b, r));
  std::unique_ptr<QemuMicrovm> qemu;
  if (b.options.qemu) {
    absl::StatusOr<std::unique_ptr<QemuMicrovm>> started = QemuOrigin(b, r);
    if (started.ok()) {
      qemu = std::move(*started);
    } else {
      r.qemu_skipped = std::string(started.status().message());
    }
  }
  for (int i = 0; i < kSaves; ++i) {
    ASSIGN_OR_RETURN(SnapshotStats full, TakeSnapshot(b, id, "Full", r.state_path, r.memory_path));
    r.full.push_back(full);
    if (qemu == nullptr) continue;
    absl::Status saved = QemuSaveOnce(b, r, *qemu);
    if (!saved.ok()) {
      r.qemu_skipped = std::string(saved.message());
      r.qemu_save_ms.clear();
      qemu.reset();
    }
  }
  if (!r.qemu_skipped.empty()) {
    std::printf("QEMU %u MiB: no save/restore numbers: %s\n", r.mem_mib, r.qemu_skipped.c_str());
  }
  if (qemu != nullptr) (void)qemu->Qmp(R"({"execute": "quit"})");
  qemu.reset();
  return HearthDiff(b, r, id);
}

absl::Status Run(Bench& b, std::vector<SizeResults>& sizes, std::vector<CloneResults>& clones) {
  for (SizeResults& r : sizes) {
    RETURN_IF_ERROR(SaveBoth(b, r));
    // Interleaved, so that machine noise hits all alike.
    for (int run = 0; run < b.options.runs; ++run) {
      RETURN_IF_ERROR(HearthRestoreOnce(b, r, run));
      RETURN_IF_ERROR(HearthColdBootOnce(b, r, run));
      // QEMU that cannot do this here is reported once and left out.
      if (b.options.qemu && r.qemu_skipped.empty() && !r.qemu_save_ms.empty()) {
        absl::Status restored = QemuRestoreOnce(b, r);
        if (!restored.ok()) {
          r.qemu_skipped = std::string(restored.message());
          r.qemu_paused.clear();
          r.qemu_running.clear();
          r.qemu_output.clear();
          std::printf("QEMU %u MiB: no restore numbers: %s\n", r.mem_mib, r.qemu_skipped.c_str());
        }
      }
      if (b.options.qemu && r.qemu_boot_skipped.empty()) {
        absl::Status booted = QemuColdBootOnce(b, r);
        if (!booted.ok()) {
          r.qemu_boot_skipped = std::string(booted.message());
          r.qemu_boot_output.clear();
          std::printf("QEMU %u MiB: no cold boot numbers: %s\n", r.mem_mib,
                      r.qemu_boot_skipped.c_str());
        }
      }
    }
    ::unlink(QemuStatePath(b, r).c_str());
  }
  for (int n : b.options.clones) {
    ASSIGN_OR_RETURN(CloneResults c, HearthClones(b, sizes.front(), n));
    clones.push_back(c);
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::StatusOr<Options> options = ParseOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "%s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  Bench b;
  b.options = *options;
  b.dir = testing::ShortTempDir();
  testing::AgentOptions agent_options;
  agent_options.flags = {"--max_vcpus=1024", "--max_vms=1024"};
  agent_options.jail = b.options.jail;
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(b.dir, agent_options);
  if (!agent.ok()) {
    std::fprintf(stderr, "FAILED: hearthd: %s\n", std::string(agent.status().message()).c_str());
    return 1;
  }
  b.agent = agent->get();
  b.stub = b.agent->stub();
  b.kernel = b.agent->images() + "/guest.elf";
  absl::Status status = CopyGuest(b.kernel);
  absl::StatusOr<std::unique_ptr<VmWatch>> watch =
      status.ok() ? VmWatch::Start(b.stub) : absl::StatusOr<std::unique_ptr<VmWatch>>(status);
  std::printf("bench/snapshot: %s KVM, %ld cores, hearthd with %s VMMs; %s microvm%s\n",
              testing::KvmKindName(testing::DetectKvm()), ::sysconf(_SC_NPROCESSORS_ONLN),
              b.agent->jailed() ? "jailed" : "unjailed (--no_jail)", QemuVersion().c_str(),
              b.options.qemu ? "" : " (skipped: --no_qemu)");
  std::printf(
      "guest: test guest `counter`, 1 vCPU, tick %d ms, half of RAM touched at start, "
      "%d KiB rewritten per tick; sizes",
      kTickMs, kRetouchKib);
  for (uint32_t mib : b.options.sizes_mib) std::printf(" %u MiB", mib);
  std::printf("\n");
  std::fflush(stdout);

  std::vector<SizeResults> sizes;
  for (uint32_t mib : b.options.sizes_mib) {
    SizeResults r;
    r.mem_mib = mib;
    r.touch_mib = mib / 2;
    sizes.push_back(r);
  }
  std::vector<CloneResults> clones;
  if (watch.ok()) {
    b.watch = watch->get();
    status = Run(b, sizes, clones);
  } else {
    status = watch.status();
  }
  if (status.ok()) {
    PrintSnapshotTable(sizes);
    PrintRestoreTable(sizes, b.options.runs);
    PrintCloneTable(clones, sizes.front().mem_mib);
    std::printf(
        "\nNotes: hearth times are client-side through the gRPC API; \"first output\" is when "
        "the WatchVms event reporting the VM's first console byte arrives. Restores read the "
        "snapshot files from the page cache (just written). Hearth maps the memory file "
        "privately (pages load on touch); QEMU reads the whole stream before it runs. This host "
        "is itself a VM that returns freed memory to its host: anything that allocates memory "
        "(snapshot writes, QEMU restore, guest first touch) varies with it.\n");
  } else {
    std::printf("FAILED: %s\n(hearthd's log: %s)\n", std::string(status.message()).c_str(),
                b.agent->log().c_str());
  }
  std::fflush(stdout);
  DeleteAll(b.stub);
  if (watch.ok()) watch->reset();
  b.agent->Stop(SIGTERM);
  // After a failure the logs stay (the snapshot files do not).
  std::string rm = status.ok() ? absl::StrCat("rm -rf ", b.dir)
                               : absl::StrCat("rm -rf ", b.dir, "/images ", b.dir, "/qemu-*.state");
  (void)std::system(rm.c_str());
  return status.ok() ? 0 : 1;
}

}  // namespace
}  // namespace hearth::bench

int main(int argc, char** argv) { return hearth::bench::Main(argc, argv); }
