#include "agent/vm_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/host_resources.h"
#include "agent/spec_diff.h"
#include "api/validate.h"
#include "common/cgroup_mounts.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"
#include "common/jail_layout.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/time_util.h"
#include "vmm/snapshot/format.h"

extern char** environ;

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;
namespace control = ::hearth::vmm::v1;
namespace state = ::hearth::agent::v1;

struct VmManager::VmmProcess {
  pid_t pid = -1;
  UniqueFd pidfd;
  std::unique_ptr<VmmConnection> connection;
  UniqueFd console;  // the agent's end of the console socket
  bool ready = false;
  bool child = true;  // spawned by this agent (can be reaped)
  struct PendingCall {
    absl::Time deadline;
    std::function<void(absl::StatusOr<control::Response>)> done;
  };
  std::map<uint64_t, PendingCall> pending;
  std::vector<std::function<void(absl::Status)>> on_ready;
  std::optional<control::GuestExit> guest_exit;
  std::string vsock_uds;  // the socket the agent bound for the VM
};

struct VmManager::VmEntry {
  state::VmRecord record;
  std::optional<VmmProcess> process;
  std::shared_ptr<ConsoleBuffer> console;
  UniqueFd serial_out;
  absl::Time created = absl::Now();
  absl::Time start_requested = absl::InfinitePast();
  std::vector<Done<bool>> pending_deletes;
  bool first_output_seen = false;

  api::Vm* vm() { return record.mutable_vm(); }
  const std::string& id() const { return record.vm().vm_id(); }
  api::VmState state() const { return record.vm().state(); }
};

namespace {

// Snapshots write or map all of guest memory: they get longer than
// kCallTimeout.
constexpr absl::Duration kSnapshotCallTimeout = absl::Minutes(10);

google::protobuf::Timestamp Now() { return google::protobuf::util::TimeUtil::GetCurrentTime(); }

const char* StateName(api::VmState state) {
  switch (state) {
    case api::VM_STATE_CONFIGURING:
      return "CONFIGURING";
    case api::VM_STATE_STARTING:
      return "STARTING";
    case api::VM_STATE_RUNNING:
      return "RUNNING";
    case api::VM_STATE_PAUSED:
      return "PAUSED";
    case api::VM_STATE_STOPPED:
      return "STOPPED";
    case api::VM_STATE_FAILED:
      return "FAILED";
    default:
      return "UNSPECIFIED";
  }
}

bool Live(api::VmState state) {
  return state != api::VM_STATE_STOPPED && state != api::VM_STATE_FAILED;
}

absl::Status NotFound(const std::string& vm_id) {
  return absl::NotFoundError(absl::StrCat("vm \"", vm_id, "\" not found"));
}

// Field 22 of /proc/<pid>/stat: the start time, to recognise a reused pid.
uint64_t ProcessStartTime(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(text.substr(paren + 2), ' ');
  uint64_t start = 0;
  // After the command: state is field 3; starttime is field 22.
  if (fields.size() > 19) (void)absl::SimpleAtoi(fields[19], &start);
  return start;
}

// Ends a VMM the agent cannot drive, so that it does not run on
// unsupervised: SIGKILL through `pidfd` when there is one (no pid reuse
// between the caller's check and the signal), else by pid, then waits up to
// 5 s for it to be gone so that its cgroups can be removed. A child of this
// agent is reaped.
// A console connection to a VMM: (the agent's end, the VMM's end). Both
// non-blocking: the agent reads on its event loop, and so does the VMM (its
// output goes with MSG_DONTWAIT either way).
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> ConsolePair() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) {
    return ErrnoStatus("console socketpair");
  }
  return std::make_pair(UniqueFd(pair[0]), UniqueFd(pair[1]));
}

void KillVmm(pid_t pid, int pidfd, bool child) {
  if (pidfd < 0 || ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) < 0) {
    ::kill(pid, SIGKILL);
  }
  if (child) {
    (void)RetryOnEintr([&] { return ::waitpid(pid, nullptr, 0); });
    return;
  }
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  if (pidfd >= 0) {
    struct pollfd exited = {pidfd, POLLIN, 0};
    (void)RetryOnEintr([&] { return ::poll(&exited, 1, 5000); });
    return;
  }
  while (::kill(pid, 0) == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
}

std::string ReadTail(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff from = std::max<std::streamoff>(0, size - static_cast<std::streamoff>(max));
  in.seekg(from);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text;
}

std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  return lines.empty() ? "" : lines.back();
}

// Invalid UTF-8 replaced by U+FFFD (the field is a proto string).
std::string SanitizeUtf8(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size();) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 2;
    if (ok) {
      out.append(in, i, n);
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

const char* SignalName(int signal) {
  switch (signal) {
    case SIGKILL:
      return "SIGKILL";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGSYS:
      return "SIGSYS";
    case SIGTERM:
      return "SIGTERM";
    case SIGBUS:
      return "SIGBUS";
    default:
      return "signal";
  }
}

// Moves `fd` to a number >= 10, so that dup2 onto 0..4 in the child
// cannot clobber another source fd.
absl::StatusOr<UniqueFd> High(UniqueFd fd) {
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10);
  if (moved < 0) return ErrnoStatus("fcntl(F_DUPFD_CLOEXEC)");
  return UniqueFd(moved);
}

absl::StatusOr<UniqueFd> OpenTap(const std::string& name, const std::string& field) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat(field, ": open /dev/net/tun"));
  UniqueFd tun(fd);
  struct ifreq request = {};
  std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tun.get(), TUNSETIFF, &request) < 0) {
    return ErrnoStatus(absl::StrCat(field, ": attaching to tap ", name));
  }
  return tun;
}

void RemoveTree(const std::string& path) {
  // The run directory holds only plain files and sockets.
  std::vector<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (struct dirent* entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
  }
  for (const std::string& name : names) ::unlink(absl::StrCat(path, "/", name).c_str());
  ::rmdir(path.c_str());
}

std::string KvmKind() {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) return "none";
  struct stat st;
  if (::stat("/sys/module/kvm_pvm", &st) == 0) return "pvm";
  if (::stat("/sys/module/kvm_intel", &st) == 0 || ::stat("/sys/module/kvm_amd", &st) == 0) {
    return "hardware";
  }
  return "unknown";
}

}  // namespace

absl::StatusOr<std::unique_ptr<VmManager>> VmManager::Create(ManagerOptions options) {
  ASSIGN_OR_RETURN(StateStore store, StateStore::Open(options.state_dir));
  ASSIGN_OR_RETURN(ImageRoots roots, ImageRoots::Open(options.image_roots));
  for (const std::string& dir : {options.run_dir, options.run_dir + "/vms"}) {
    if (::mkdir(dir.c_str(), 0711) < 0 && errno != EEXIST) {
      return ErrnoStatus(absl::StrCat("mkdir ", dir));
    }
  }
  if (options.max_vcpus == 0)
    options.max_vcpus = 4 * static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN));
  if (options.max_memory_mib == 0) {
    options.max_memory_mib = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                             static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) / (1024 * 1024);
  }
  std::unique_ptr<VmManager> manager(
      new VmManager(std::move(options), std::move(store), std::move(roots)));
  ASSIGN_OR_RETURN(manager->loop_, EventLoop::Create());
  std::ifstream mounts("/proc/self/mounts");
  std::string text((std::istreambuf_iterator<char>(mounts)), std::istreambuf_iterator<char>());
  manager->cgroup_mounts_ = ParseCgroupMounts(text);
  manager->cgroup_version_ = manager->options_.cgroup_version;
  if (manager->cgroup_version_ == 0) {
    manager->cgroup_version_ = FindCgroupV1(manager->cgroup_mounts_, "memory") != nullptr ? 1 : 2;
  }
  return manager;
}

VmManager::VmManager(ManagerOptions options, StateStore store, ImageRoots roots)
    : options_(std::move(options)), store_(std::move(store)), roots_(std::move(roots)) {}

VmManager::~VmManager() { Stop(); }

absl::Status VmManager::Start() {
  std::vector<std::string> skipped;
  std::vector<state::VmRecord> records = store_.LoadVms(&skipped);
  for (const std::string& s : skipped) LOG(WARNING) << "state: skipped " << s;
  uint64_t version = store_.LoadAgent().resource_version();
  for (state::VmRecord& record : records) {
    version = std::max(version, record.vm().resource_version());
    auto entry = std::make_unique<VmEntry>();
    entry->record = std::move(record);
    entry->console = std::make_shared<ConsoleBuffer>(options_.console_buffer_bytes);
    std::string id = entry->id();
    absl::MutexLock lock(&snapshot_mutex_);
    snapshot_[id] = entry->record.vm();
    consoles_[id] = entry->console;
    entries_[id] = std::move(entry);
  }
  {
    absl::MutexLock lock(&snapshot_mutex_);
    resource_version_ = version;
  }
  reserved_version_ = version;
  LOG(INFO) << "loaded " << entries_.size() << " VM record(s); resource version " << version;
  for (auto& [id, entry] : entries_) {
    if (Live(entry->state())) {
      std::string vm_id = id;
      Post([this, vm_id] {
        if (VmEntry* e = Find(vm_id)) Reattach(e);
      });
    }
  }
  // Requests a VMM does not answer in time fail rather than hang the RPC.
  ASSIGN_OR_RETURN(TimerFd timer, TimerFd::Create());
  call_timer_ = std::move(timer);
  RETURN_IF_ERROR(call_timer_->Arm(absl::Seconds(1), absl::Seconds(1)));
  RETURN_IF_ERROR(loop_->Add(call_timer_->fd(), [this](uint32_t) {
    (void)call_timer_->Read();
    ExpireCalls();
  }));
  thread_ = std::thread([this] {
    absl::Status status = loop_->Run();
    if (!status.ok()) LOG(ERROR) << "supervisor loop: " << status.message();
  });
  return absl::OkStatus();
}

void VmManager::Stop() {
  if (!thread_.joinable()) return;
  loop_->Stop();
  thread_.join();
}

VmManager::VmEntry* VmManager::Find(const std::string& vm_id) {
  auto it = entries_.find(vm_id);
  return it == entries_.end() ? nullptr : it->second.get();
}

absl::StatusOr<VmManager::VmEntry*> VmManager::FindOr(const std::string& vm_id) {
  RETURN_IF_ERROR(ValidateVmId(vm_id));
  VmEntry* entry = Find(vm_id);
  if (entry == nullptr) return NotFound(vm_id);
  return entry;
}

absl::Status VmManager::RequireState(const VmEntry& entry, absl::Span<const api::VmState> states,
                                     absl::string_view what) const {
  for (api::VmState s : states) {
    if (entry.state() == s) return absl::OkStatus();
  }
  std::vector<std::string> allowed;
  for (api::VmState s : states) allowed.push_back(StateName(s));
  return absl::FailedPreconditionError(absl::StrCat(what, ": vm \"", entry.id(), "\" is ",
                                                    StateName(entry.state()), " (allowed in ",
                                                    absl::StrJoin(allowed, ", "), ")"));
}

api::HostAllocation VmManager::AllocatedLocked(const std::string& except_vm) const {
  api::HostAllocation allocated;
  for (const auto& [id, vm] : snapshot_) {
    if (id == except_vm || !Live(vm.state())) continue;
    allocated.set_vcpus(allocated.vcpus() + validate::VcpuCount(vm.spec().machine_config()));
    allocated.set_memory_mib(allocated.memory_mib() +
                             validate::MemSizeMib(vm.spec().machine_config()));
    allocated.set_vms(allocated.vms() + 1);
  }
  return allocated;
}

api::HostAllocation VmManager::Allocated() const {
  absl::MutexLock lock(&snapshot_mutex_);
  return AllocatedLocked("");
}

absl::Status VmManager::Admit(const api::VmConfig& config, const std::string& except_vm,
                              uint32_t count) const {
  api::HostAllocation allocated = AllocatedLocked(except_vm);
  uint64_t vcpus =
      uint64_t{validate::VcpuCount(config.machine_config())} * count + allocated.vcpus();
  uint64_t memory =
      uint64_t{validate::MemSizeMib(config.machine_config())} * count + allocated.memory_mib();
  uint64_t vms = uint64_t{count} + allocated.vms();
  if (vms > options_.max_vms) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the host runs its maximum of ", options_.max_vms, " VMs"));
  }
  if (vcpus > options_.max_vcpus) {
    return absl::ResourceExhaustedError(absl::StrCat("not enough vCPU capacity: ", vcpus,
                                                     " needed in all, the host admits ",
                                                     options_.max_vcpus));
  }
  if (memory > options_.max_memory_mib) {
    return absl::ResourceExhaustedError(absl::StrCat("not enough memory capacity: ", memory,
                                                     " MiB needed in all, the host admits ",
                                                     options_.max_memory_mib, " MiB"));
  }
  return absl::OkStatus();
}

void VmManager::Publish(VmEntry* entry, api::WatchEvent::Type type) {
  uint64_t current;
  {
    absl::MutexLock lock(&snapshot_mutex_);
    current = ++resource_version_;
    entry->vm()->set_resource_version(resource_version_);
    if (type == api::WatchEvent::DELETED) {
      snapshot_.erase(entry->id());
    } else {
      snapshot_[entry->id()] = entry->record.vm();
    }
    api::WatchEvent event;
    event.set_type(type);
    *event.mutable_vm() = entry->record.vm();
    event.set_resource_version(resource_version_);
    history_.push_back(event);
    while (history_.size() > options_.watch_history) history_.pop_front();
    for (const auto& [id, watcher] : watchers_) {
      if ((watcher.vm_id.empty() || watcher.vm_id == entry->id()) &&
          watcher.selector.Matches(entry->record.vm().labels())) {
        watcher.sink(event);
      }
    }
  }
  // Versions never go back across restarts: persist a reservation ahead.
  if (current > reserved_version_) {
    reserved_version_ = current + 1000;
    state::AgentState agent;
    agent.set_resource_version(reserved_version_);
    absl::Status saved = store_.SaveAgent(agent);
    if (!saved.ok()) LOG(ERROR) << "state: " << saved.message();
  }
  if (type != api::WatchEvent::DELETED) {
    absl::Status saved = store_.SaveVm(entry->record);
    if (!saved.ok()) LOG(ERROR) << "state: " << saved.message();
  }
}

void VmManager::SetState(VmEntry* entry, api::VmState new_state, std::string reason) {
  api::Vm* vm = entry->vm();
  if (new_state == api::VM_STATE_RUNNING && !vm->status().has_started_at()) {
    *vm->mutable_status()->mutable_started_at() = Now();
  }
  if (!Live(new_state) && Live(vm->state())) {
    *vm->mutable_status()->mutable_stopped_at() = Now();
  }
  vm->set_state(new_state);
  vm->mutable_status()->set_reason(std::move(reason));
  LOG(INFO) << "vm " << entry->id() << ": " << StateName(new_state)
            << (vm->status().reason().empty() ? "" : ": ") << vm->status().reason();
  Publish(entry, api::WatchEvent::MODIFIED);
}

// ----------------------------------------------------------------------------
// Creating and deleting.

void VmManager::CreateVm(const api::CreateVmRequest& request, Done<api::Vm> done) {
  absl::Status valid = ValidateVmId(request.vm_id());
  if (valid.ok()) valid = ValidateLabels(request.labels());
  if (valid.ok()) {
    valid = validate::ValidateVmConfig(request.config(), /*require_boot_source=*/request.start());
    if (!valid.ok()) valid = absl::Status(valid.code(), absl::StrCat("config.", valid.message()));
  }
  // Host paths are checked now, as the Put* calls check them, rather than
  // at boot after a VMM was started for nothing.
  if (valid.ok()) valid = CheckConfigResources(roots_, request.config(), "config.");
  if (!valid.ok()) {
    done(valid);
    return;
  }
  Post([this, request, done] {
    if (VmEntry* existing = Find(request.vm_id())) {
      api::CreateVmRequest before;
      *before.mutable_labels() = existing->record.vm().labels();
      *before.mutable_config() = existing->record.created_config();
      api::CreateVmRequest after;
      *after.mutable_labels() = request.labels();
      *after.mutable_config() = request.config();
      std::vector<std::string> differences = DifferingFields(before, after, "");
      if (differences.empty()) {
        // An idempotent repeat. A create-and-start whose start never
        // happened (the agent restarted in between) starts now.
        if (request.start() && existing->state() == api::VM_STATE_CONFIGURING) {
          InstanceStart(request.vm_id(), done);
        } else {
          done(existing->record.vm());
        }
      } else {
        done(absl::AlreadyExistsError(absl::StrCat("vm \"", request.vm_id(),
                                                   "\" exists with different ",
                                                   absl::StrJoin(differences, ", "))));
      }
      return;
    }
    api::VmConfig spec = request.config();
    validate::FillMachineConfigDefaults(spec.mutable_machine_config());
    {
      absl::MutexLock lock(&snapshot_mutex_);
      absl::Status admitted = Admit(spec, "");
      if (!admitted.ok()) {
        done(admitted);
        return;
      }
    }
    absl::Status spawned = AddVm(request.vm_id(), request.labels(), spec, request.config(), "");
    if (!spawned.ok()) {
      done(spawned);
      return;
    }
    if (!request.start()) {
      VmEntry* entry = Find(request.vm_id());
      done(entry->record.vm());
      return;
    }
    std::string vm_id = request.vm_id();
    Post([this, vm_id, done] { InstanceStart(vm_id, done); });
  });
}

absl::Status VmManager::AddVm(const std::string& vm_id, const Labels& labels,
                              const api::VmConfig& spec, const api::VmConfig& created_config,
                              const std::string& clone_key) {
  auto owned = std::make_unique<VmEntry>();
  VmEntry* entry = owned.get();
  entry->console = std::make_shared<ConsoleBuffer>(options_.console_buffer_bytes);
  entry->record.mutable_vm()->set_vm_id(vm_id);
  *entry->vm()->mutable_labels() = labels;
  *entry->vm()->mutable_spec() = spec;
  *entry->record.mutable_created_config() = created_config;
  entry->record.set_clone_key(clone_key);
  entry->vm()->set_state(api::VM_STATE_CONFIGURING);
  entry->vm()->mutable_status()->set_reason("starting the VMM");
  *entry->vm()->mutable_status()->mutable_created_at() = Now();
  entries_[vm_id] = std::move(owned);
  {
    absl::MutexLock lock(&snapshot_mutex_);
    consoles_[vm_id] = entry->console;
  }
  absl::Status spawned = SpawnVmm(entry);
  if (!spawned.ok()) {
    entry->vm()->set_state(api::VM_STATE_FAILED);
    entry->vm()->mutable_status()->set_reason(
        absl::StrCat("could not start the VMM: ", spawned.message()));
    *entry->vm()->mutable_status()->mutable_stopped_at() = Now();
    Publish(entry, api::WatchEvent::ADDED);
    return absl::InternalError(entry->vm()->status().reason());
  }
  Publish(entry, api::WatchEvent::ADDED);
  return absl::OkStatus();
}

void VmManager::DeleteVm(const std::string& vm_id, bool force, Done<bool> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) {
    done(valid);
    return;
  }
  Post([this, vm_id, force, done] {
    VmEntry* entry = Find(vm_id);
    if (entry == nullptr) {
      done(false);
      return;
    }
    api::VmState s = entry->state();
    if (!force &&
        (s == api::VM_STATE_STARTING || s == api::VM_STATE_RUNNING || s == api::VM_STATE_PAUSED)) {
      done(absl::FailedPreconditionError(
          absl::StrCat("DeleteVm: vm \"", vm_id, "\" is ", StateName(s),
                       "; stop the guest first (SendCtrlAltDel) or delete with force")));
      return;
    }
    entry->pending_deletes.push_back(done);
    if (entry->process.has_value() && entry->process->pidfd.valid()) {
      // The exit handler finishes the deletion.
      if (::syscall(SYS_pidfd_send_signal, entry->process->pidfd.get(), SIGKILL, nullptr, 0) < 0) {
        ::kill(entry->process->pid, SIGKILL);
      }
      return;
    }
    FinishDelete(entry);
  });
}

void VmManager::FinishDelete(VmEntry* entry) {
  std::string vm_id = entry->id();
  CleanUpProcess(entry);
  RemoveTree(entry->record.run_dir());
  absl::Status removed = store_.DeleteVm(vm_id);
  if (!removed.ok()) LOG(ERROR) << "state: " << removed.message();
  std::vector<Done<bool>> waiting = std::move(entry->pending_deletes);
  Publish(entry, api::WatchEvent::DELETED);
  {
    absl::MutexLock lock(&snapshot_mutex_);
    consoles_.erase(vm_id);
    metrics_.erase(vm_id);
  }
  entries_.erase(vm_id);
  LOG(INFO) << "vm " << vm_id << ": deleted";
  for (auto& done : waiting) done(true);
}

// ----------------------------------------------------------------------------
// The VMM process.

std::vector<std::pair<std::string, std::string>> CgroupSettings(const api::VmConfig& spec,
                                                                int version,
                                                                uint64_t overhead_mib) {
  uint64_t memory = (validate::MemSizeMib(spec.machine_config()) + overhead_mib) * 1024 * 1024;
  uint32_t vcpus = validate::VcpuCount(spec.machine_config());
  uint64_t quota = uint64_t{vcpus} * 100000;
  uint32_t pids = 64 + 2 * vcpus;
  if (version == 2) {
    return {{"memory.max", absl::StrCat(memory)},
            {"cpu.max", absl::StrCat(quota, " 100000")},
            {"pids.max", absl::StrCat(pids)}};
  }
  return {{"memory.limit_in_bytes", absl::StrCat(memory)},
          {"cpu.cfs_period_us", "100000"},
          {"cpu.cfs_quota_us", absl::StrCat(quota)},
          {"pids.max", absl::StrCat(pids)}};
}

absl::Status VmManager::SpawnVmm(VmEntry* entry) {
  const std::string& vm_id = entry->id();
  // A uid of its own: VMMs cannot signal or read each other.
  std::set<uint32_t> used;
  for (const auto& [id, e] : entries_) {
    if (e.get() != entry && e->record.uid() != 0) used.insert(e->record.uid());
  }
  uint32_t uid = options_.vmm_uid_base;
  while (used.count(uid)) ++uid;
  std::string run_dir = absl::StrCat(options_.run_dir, "/vms/", vm_id);
  RemoveTree(run_dir);  // a leftover from an earlier VM with this id
  if (::mkdir(run_dir.c_str(), 0700) < 0) return ErrnoStatus(absl::StrCat("mkdir ", run_dir));

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return ErrnoStatus("control socketpair");
  }
  UniqueFd agent_end(pair[0]);
  ASSIGN_OR_RETURN(UniqueFd vmm_end, High(UniqueFd(pair[1])));
  // The reattach socket: only this (root) agent may connect (0600, and the
  // VMM checks SO_PEERCRED).
  std::string reattach_path = run_dir + "/control.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSIGN_OR_RETURN(sockaddr_un address, UnixSocketAddress(reattach_path, "reattach socket"));
  if (!listener.valid() ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
      ::chmod(reattach_path.c_str(), 0600) < 0 || ::listen(listener.get(), 4) < 0) {
    return ErrnoStatus(absl::StrCat("reattach socket ", reattach_path));
  }
  ASSIGN_OR_RETURN(listener, High(std::move(listener)));
  std::string log_path = run_dir + "/vmm.log";
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return ErrnoStatus(absl::StrCat("open ", log_path));
  ASSIGN_OR_RETURN(log, High(std::move(log)));

  const bool jailed = !options_.jailer_path.empty();
  std::vector<std::string> argv;
  if (jailed) {
    argv = {options_.jailer_path,
            "--id",
            vm_id,
            "--exec-file",
            options_.vmm_path,
            "--uid",
            absl::StrCat(uid),
            "--gid",
            absl::StrCat(uid),
            "--chroot-base-dir",
            options_.chroot_base_dir,
            "--cgroup-version",
            absl::StrCat(cgroup_version_),
            "--parent-cgroup",
            options_.parent_cgroup,
            "--keep-fd",
            "3",
            "--keep-fd",
            "4"};
  } else {
    argv = {options_.vmm_path};
  }
  std::vector<std::string> cgroup_dirs;
  for (const auto& [file, value] :
       jailed ? CgroupSettings(entry->vm()->spec(), cgroup_version_, options_.vmm_overhead_mib)
              : std::vector<std::pair<std::string, std::string>>{}) {
    absl::StatusOr<std::string> dir =
        CgroupDirectory(cgroup_mounts_, cgroup_version_, file.substr(0, file.find('.')),
                        options_.parent_cgroup, vm_id);
    if (!dir.ok()) continue;  // not on this host: no limit of that kind
    argv.insert(argv.end(), {"--cgroup", absl::StrCat(file, "=", value)});
    if (std::find(cgroup_dirs.begin(), cgroup_dirs.end(), *dir) == cgroup_dirs.end()) {
      cgroup_dirs.push_back(*dir);
    }
  }
  if (jailed) argv.push_back("--");
  argv.insert(argv.end(),
              {"--control_fd=3", "--reattach_fd=4", absl::StrCat("--agent_uid=", ::geteuid())});
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 2);
  posix_spawn_file_actions_adddup2(&actions, vmm_end.get(), 3);
  posix_spawn_file_actions_adddup2(&actions, listener.get(), 4);
  pid_t pid;
  char* envp[] = {nullptr};
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoStatus(rc, absl::StrCat("spawning ", options_.jailer_path));

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  int pidfd_errno = errno;
  entry->record.set_pid(pid);
  entry->record.set_pid_start_time(ProcessStartTime(pid));
  entry->record.set_uid(jailed ? uid : ::geteuid());
  entry->record.set_run_dir(run_dir);
  if (jailed) {
    entry->record.set_jail_dir(JailDirectory(options_.chroot_base_dir, options_.vmm_path, vm_id));
  }
  entry->record.clear_cgroup_dirs();
  for (const std::string& dir : cgroup_dirs) entry->record.add_cgroup_dirs(dir);
  entry->vm()->mutable_status()->set_vmm_pid(pid);
  entry->process.emplace();
  entry->process->pid = pid;
  entry->process->connection =
      std::make_unique<VmmConnection>(MessageChannel(std::move(agent_end)));
  std::string id = vm_id;
  absl::Status watched =
      pidfd >= 0 ? absl::OkStatus() : ErrnoStatus(pidfd_errno, "pidfd_open of the VMM");
  if (watched.ok()) {
    WatchProcess(entry, pidfd);
    watched = loop_->Add(entry->process->connection->fd(),
                         [this, id](uint32_t) { OnControlReadable(id); });
  }
  if (!watched.ok()) {  // unsupervised, it would run on unseen: end it now
    KillVmm(pid, pidfd, /*child=*/true);
    CleanUpProcess(entry);
  }
  return watched;
}

void VmManager::WatchProcess(VmEntry* entry, int pidfd) {
  entry->process->pidfd.Reset(pidfd);
  std::string id = entry->id();
  absl::Status added = loop_->Add(pidfd, [this, id](uint32_t) { OnProcessExit(id); });
  if (!added.ok()) LOG(ERROR) << "vm " << id << ": watching the VMM: " << added.message();
}

void VmManager::Reattach(VmEntry* entry) {
  const state::VmRecord& record = entry->record;
  pid_t pid = record.pid();
  auto fail = [&](const std::string& why) {
    entry->process.reset();
    CleanUpProcess(entry);
    api::VmExit* exit = entry->vm()->mutable_status()->mutable_exit();
    exit->set_console_tail("");
    SetState(entry, api::VM_STATE_FAILED, why);
  };
  if (pid <= 0 || ProcessStartTime(pid) != record.pid_start_time() || ::kill(pid, 0) < 0) {
    fail("the VMM exited while the agent was down");
    return;
  }
  // The VMM runs (its start time matches). One the agent cannot supervise
  // or reach is ended rather than left running on its own.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  UniqueFd socket(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  std::string path = record.run_dir() + "/control.sock";
  absl::StatusOr<sockaddr_un> address = UnixSocketAddress(path, "reattach socket");
  std::string unreachable;
  if (!pidfd.valid()) {
    unreachable = absl::StrCat("cannot supervise the VMM (pid ", pid,
                               "): pidfd_open: ", std::strerror(errno));
  } else if (!address.ok()) {
    unreachable =
        absl::StrCat("cannot re-attach to the VMM (pid ", pid, "): ", address.status().message());
  } else if (!socket.valid() || ::connect(socket.get(), reinterpret_cast<sockaddr*>(&*address),
                                          sizeof(*address)) < 0) {
    unreachable = absl::StrCat("cannot re-attach to the VMM (pid ", pid, ") at ", path, ": ",
                               std::strerror(errno));
  }
  if (!unreachable.empty()) {
    KillVmm(pid, pidfd.get(), /*child=*/false);
    fail(unreachable + "; the VMM was killed");
    return;
  }
  entry->process.emplace();
  entry->process->pid = pid;
  entry->process->child = false;
  entry->process->connection = std::make_unique<VmmConnection>(MessageChannel(std::move(socket)));
  WatchProcess(entry, pidfd.Release());
  std::string id = entry->id();
  (void)loop_->Add(entry->process->connection->fd(),
                   [this, id](uint32_t) { OnControlReadable(id); });
  LOG(INFO) << "vm " << id << ": re-attaching to the VMM, pid " << pid;
  // Ready arrives first; then the console is handed over again.
  WhenReady(entry, [this, id](absl::Status status) {
    VmEntry* e = Find(id);
    if (e == nullptr || !status.ok()) return;
    if (e->state() == api::VM_STATE_CONFIGURING) return;  // no console before boot
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = ConsolePair();
    if (!pair.ok()) {
      LOG(WARNING) << "vm " << id << ": console not re-attached: " << pair.status().message();
      return;
    }
    auto& [agent_end, vmm_end] = *pair;
    e->process->console = std::move(agent_end);
    (void)loop_->Add(e->process->console.get(), [this, id](uint32_t) { OnConsoleReadable(id); });
    control::Request attach;
    attach.mutable_attach_console();
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(vmm_end));
    Call(e, attach, std::move(fds), [id](absl::StatusOr<control::Response> response) {
      if (!response.ok() || response->code() != 0) {
        LOG(WARNING) << "vm " << id << ": console not re-attached: "
                     << (response.ok() ? response->message() : response.status().message());
      }
    });
  });
}

void VmManager::WhenReady(VmEntry* entry, std::function<void(absl::Status)> action) {
  if (!entry->process.has_value()) {
    action(absl::UnavailableError("the VMM is not running"));
  } else if (entry->process->ready) {
    action(absl::OkStatus());
  } else {
    entry->process->on_ready.push_back(std::move(action));
  }
}

void VmManager::Call(VmEntry* entry, control::Request request, std::vector<UniqueFd> fds,
                     std::function<void(absl::StatusOr<control::Response>)> done,
                     absl::Duration timeout) {
  if (!entry->process.has_value() || entry->process->connection == nullptr ||
      entry->process->connection->closed()) {
    done(absl::UnavailableError(absl::StrCat("vm \"", entry->id(), "\" has no running VMM")));
    return;
  }
  std::vector<int> raw;
  for (const UniqueFd& fd : fds) raw.push_back(fd.get());
  absl::StatusOr<uint64_t> id = entry->process->connection->Send(std::move(request), raw);
  if (!id.ok()) {
    done(id.status());
    return;
  }
  entry->process->pending[*id] = VmmProcess::PendingCall{absl::Now() + timeout, std::move(done)};
}

void VmManager::ExpireCalls() {
  const absl::Time now = absl::Now();
  std::vector<std::pair<std::string, std::function<void(absl::StatusOr<control::Response>)>>>
      expired;
  for (auto& [id, entry] : entries_) {
    if (!entry->process.has_value()) continue;
    auto& pending = entry->process->pending;
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline > now) {
        ++it;
        continue;
      }
      expired.emplace_back(id, std::move(it->second.done));
      it = pending.erase(it);
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
  VmEntry* entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value()) return;
  VmmConnection* connection = entry->process->connection.get();
  uint64_t malformed = connection->malformed();
  absl::Status read = connection->ReadAvailable();
  if (connection->malformed() != malformed) {
    LOG(WARNING) << "vm " << vm_id << ": dropped " << connection->malformed() - malformed
                 << " malformed control message(s) from the VMM, the last: "
                 << connection->last_malformed();
  }
  // Responses first, then events, in the order they came.
  for (auto it = entry->process->pending.begin(); it != entry->process->pending.end();) {
    if (std::optional<control::Response> response = connection->TakeResponse(it->first)) {
      auto done = std::move(it->second.done);
      it = entry->process->pending.erase(it);
      done(*response);
      entry = Find(vm_id);
      if (entry == nullptr || !entry->process.has_value()) return;
    } else {
      ++it;
    }
  }
  while (std::optional<control::Event> event = connection->TakeEvent()) {
    OnEvent(entry, *event);
    entry = Find(vm_id);
    if (entry == nullptr || !entry->process.has_value()) return;
  }
  if (!read.ok()) {
    // The VMM closed its end (it is exiting; the pidfd reports the end), or
    // the socket failed: nothing more will come.
    if (loop_->Watching(connection->fd())) (void)loop_->Remove(connection->fd());
    if (!absl::IsUnavailable(read)) LOG(WARNING) << "vm " << vm_id << ": " << read.message();
  }
}

void VmManager::OnEvent(VmEntry* entry, const control::Event& event) {
  switch (event.event_case()) {
    case control::Event::kReady: {
      VmmProcess& process = *entry->process;
      process.ready = true;
      if (event.ready().protocol_version() != 1) {
        LOG(ERROR) << "vm " << entry->id() << ": VMM speaks control protocol "
                   << event.ready().protocol_version();
      }
      api::VmStatus* status = entry->vm()->mutable_status();
      if (status->boot_timing().create_to_vmm_ready_us() == 0) {
        status->mutable_boot_timing()->set_create_to_vmm_ready_us(
            static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - entry->created)));
      }
      bool found = false;
      for (api::Condition& c : *status->mutable_conditions()) {
        if (c.type() != "VmmReady") continue;
        found = true;
        if (c.status() != api::CONDITION_STATUS_TRUE) {
          c.set_status(api::CONDITION_STATUS_TRUE);
          *c.mutable_last_transition_time() = Now();
        }
      }
      if (!found) {
        api::Condition* c = status->add_conditions();
        c->set_type("VmmReady");
        c->set_status(api::CONDITION_STATUS_TRUE);
        c->set_reason("Ready");
        *c->mutable_last_transition_time() = Now();
      }
      // A re-attached VMM tells us where it is.
      api::VmState now = entry->state();
      if (event.ready().state() == control::VM_STATE_RUNNING && now != api::VM_STATE_RUNNING &&
          now != api::VM_STATE_STARTING) {
        entry->vm()->set_state(api::VM_STATE_RUNNING);
      } else if (event.ready().state() == control::VM_STATE_PAUSED) {
        entry->vm()->set_state(api::VM_STATE_PAUSED);
      }
      if (entry->state() == api::VM_STATE_CONFIGURING)
        status->set_reason("waiting for InstanceStart");
      Publish(entry, api::WatchEvent::MODIFIED);
      std::vector<std::function<void(absl::Status)>> waiting = std::move(process.on_ready);
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

void VmManager::ConnectVsock(VmEntry* entry, uint64_t request_id, uint32_t port) {
  control::Request reply;
  reply.mutable_vsock_connected()->set_request_id(request_id);
  std::vector<UniqueFd> fds;
  absl::StatusOr<ImageRoots::Parent> parent = roots_.OpenParent(
      "vsock.uds_path", absl::StrCat(entry->vm()->spec().vsock().uds_path(), "_", port));
  if (!parent.ok()) {
    reply.mutable_vsock_connected()->set_error(std::string(parent.status().message()));
  } else {
    UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    absl::StatusOr<sockaddr_un> address = UnixSocketAddress(parent->ProcPath(), "vsock.uds_path");
    if (!address.ok()) {
      reply.mutable_vsock_connected()->set_error(std::string(address.status().message()));
    } else if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&*address), sizeof(*address)) <
               0) {
      reply.mutable_vsock_connected()->set_error(
          absl::StrCat("connect ", entry->vm()->spec().vsock().uds_path(), "_", port, ": ",
                       std::strerror(errno)));
    } else {
      fds.push_back(std::move(socket));
    }
  }
  Call(entry, reply, std::move(fds), [](absl::StatusOr<control::Response>) {});
}

void VmManager::OnConsoleReadable(const std::string& vm_id) {
  VmEntry* entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value() || !entry->process->console.valid()) return;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(entry->process->console.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {
        (void)loop_->Remove(entry->process->console.get());
        entry->process->console.Reset();
      }
      return;
    }
    entry->console->Append(absl::string_view(buf, static_cast<size_t>(n)));
    if (entry->serial_out.valid())
      (void)!::write(entry->serial_out.get(), buf, static_cast<size_t>(n));
    if (!entry->first_output_seen && entry->start_requested != absl::InfinitePast()) {
      entry->first_output_seen = true;
      entry->vm()->mutable_status()->mutable_boot_timing()->set_start_to_first_output_us(
          static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - entry->start_requested)));
      Publish(entry, api::WatchEvent::MODIFIED);
    }
  }
}

void VmManager::OnProcessExit(const std::string& vm_id) {
  VmEntry* entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value()) return;
  VmmProcess& process = *entry->process;
  // Output the VMM wrote before dying is still in the socket.
  OnConsoleReadable(vm_id);
  OnControlReadable(vm_id);
  entry = Find(vm_id);
  if (entry == nullptr || !entry->process.has_value()) return;
  api::VmExit* exit = entry->vm()->mutable_status()->mutable_exit();
  exit->Clear();
  bool known = false;
  if (process.child) {
    siginfo_t info = {};
    if (::waitid(P_PIDFD, static_cast<id_t>(process.pidfd.get()), &info, WEXITED) == 0) {
      known = true;
      if (info.si_code == CLD_EXITED) {
        exit->set_exit_code(info.si_status);
      } else {
        exit->set_signal(info.si_status);
      }
    }
  }
  // The VMM logs to vmm.log in its run directory, or to logger.log_path.
  std::string log = ReadTail(entry->record.run_dir() + "/vmm.log", 4096);
  if (entry->vm()->spec().has_logger() && !entry->vm()->spec().logger().log_path().empty()) {
    log += ReadTail(entry->vm()->spec().logger().log_path(), 4096);
  }
  size_t bad = log.rfind("bad syscall ");
  if (bad != std::string::npos) {
    int number = 0;
    std::string digits;
    for (size_t i = bad + 12; i < log.size() && std::isdigit(static_cast<unsigned char>(log[i]));
         ++i) {
      digits.push_back(log[i]);
    }
    if (absl::SimpleAtoi(digits, &number)) exit->set_bad_syscall(number);
  }
  exit->set_console_tail(SanitizeUtf8(entry->console->Tail(4096)));
  std::optional<control::GuestExit> guest = process.guest_exit;
  if (guest.has_value()) {
    exit->set_guest_reset(guest->kind() == control::GuestExit::KIND_RESET ||
                          guest->kind() == control::GuestExit::KIND_TRIPLE_FAULT);
  }
  api::VmState next = api::VM_STATE_FAILED;
  std::string reason;
  bool clean_exit = !known || (exit->has_exit_code() && exit->exit_code() == 0);
  if (guest.has_value() && clean_exit &&
      (guest->kind() == control::GuestExit::KIND_RESET ||
       guest->kind() == control::GuestExit::KIND_POWER_OFF ||
       guest->kind() == control::GuestExit::KIND_STOPPED)) {
    next = api::VM_STATE_STOPPED;
    reason = guest->reason();
  } else if (guest.has_value() && guest->kind() != control::GuestExit::KIND_STOPPED) {
    reason = guest->reason();
  } else if (exit->has_signal()) {
    reason = exit->has_bad_syscall() ? absl::StrCat("bad syscall ", exit->bad_syscall(),
                                                    ": the VMM's seccomp filter killed it")
                                     : absl::StrCat("the VMM was killed by signal ", exit->signal(),
                                                    " (", SignalName(exit->signal()), ")");
  } else if (exit->has_exit_code()) {
    reason = absl::StrCat("the VMM exited with code ", exit->exit_code(),
                          LastLine(log).empty() ? "" : ": ", LastLine(log));
  } else {
    reason = "the VMM exited while the agent was away (its exit status is unknown)";
  }
  // Whoever waits on the VMM learns that it is gone.
  std::vector<std::function<void(absl::StatusOr<control::Response>)>> pending;
  for (auto& [id, call] : process.pending) pending.push_back(std::move(call.done));
  std::vector<std::function<void(absl::Status)>> on_ready = std::move(process.on_ready);
  CleanUpProcess(entry);
  // Killed for a DeleteVm: the deletion is the only change watchers see.
  const bool deleting = !entry->pending_deletes.empty();
  if (!deleting) SetState(entry, next, reason);
  absl::Status gone = absl::UnavailableError(absl::StrCat("the VMM exited: ", reason));
  for (auto& done : pending) done(gone);
  for (auto& action : on_ready) action(gone);
  entry = Find(vm_id);
  if (entry != nullptr && !entry->pending_deletes.empty()) FinishDelete(entry);
}

void VmManager::CleanUpProcess(VmEntry* entry) {
  if (entry->process.has_value()) {
    VmmProcess& process = *entry->process;
    for (int fd : {process.connection ? process.connection->fd() : -1, process.console.get(),
                   process.pidfd.get()}) {
      if (fd >= 0 && loop_->Watching(fd)) (void)loop_->Remove(fd);
    }
    if (!process.vsock_uds.empty()) ::unlink(process.vsock_uds.c_str());
    entry->process.reset();
  }
  // The VMM is gone: its cgroups are empty and its jail unused.
  for (const std::string& dir : entry->record.cgroup_dirs()) {
    if (::rmdir(dir.c_str()) < 0 && errno != ENOENT) {
      LOG(WARNING) << "vm " << entry->id() << ": rmdir " << dir << ": " << std::strerror(errno);
    }
  }
  if (!entry->record.jail_dir().empty()) {
    ::rmdir((entry->record.jail_dir() + "/root").c_str());
    ::rmdir(entry->record.jail_dir().c_str());
  }
  if (!entry->record.run_dir().empty())
    ::unlink((entry->record.run_dir() + "/control.sock").c_str());
  entry->serial_out.Reset();
  entry->console->Close();
  entry->record.set_pid(0);
  entry->vm()->mutable_status()->set_vmm_pid(0);
}

// ----------------------------------------------------------------------------
// Booting and running.

absl::Status VmManager::WriteCgroupLimits(VmEntry* entry) {
  // The spec may have changed since the jailer set the limits. Each file
  // is in the one hierarchy of the VM's that has its controller.
  for (const auto& [file, value] :
       CgroupSettings(entry->vm()->spec(), cgroup_version_, options_.vmm_overhead_mib)) {
    for (const std::string& dir : entry->record.cgroup_dirs()) {
      std::string path = absl::StrCat(dir, "/", file);
      if (::access(path.c_str(), F_OK) != 0) continue;
      absl::Status written = WriteControlFile(path, value);
      if (!written.ok()) {
        return absl::Status(written.code(),
                            absl::StrCat("setting the VM's cgroup limits: ", written.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status VmManager::OpenBootResources(VmEntry* entry, control::FdMap* map,
                                          std::vector<UniqueFd>* fds, UniqueFd* console,
                                          bool boot) {
  const api::VmConfig& spec = entry->vm()->spec();
  auto add = [&](UniqueFd fd) {
    fds->push_back(std::move(fd));
    return static_cast<int32_t>(fds->size() - 1);
  };
  if (boot) {
    ASSIGN_OR_RETURN(UniqueFd kernel,
                     roots_.OpenFile("boot_source.kernel_image_path",
                                     spec.boot_source().kernel_image_path(), O_RDONLY));
    map->set_kernel(add(std::move(kernel)));
  }
  if (boot && !spec.boot_source().initrd_path().empty()) {
    ASSIGN_OR_RETURN(UniqueFd initrd, roots_.OpenFile("boot_source.initrd_path",
                                                      spec.boot_source().initrd_path(), O_RDONLY));
    map->set_initrd(add(std::move(initrd)));
  }
  for (int i = 0; i < spec.drives_size(); ++i) {
    const api::Drive& drive = spec.drives(i);
    ASSIGN_OR_RETURN(UniqueFd file, roots_.OpenFile(absl::StrCat("drives[", i, "].path_on_host"),
                                                    drive.path_on_host(), DriveOpenFlags(drive)));
    (*map->mutable_drives())[drive.drive_id()] = add(std::move(file));
  }
  for (int i = 0; i < spec.network_interfaces_size(); ++i) {
    const api::NetworkInterface& iface = spec.network_interfaces(i);
    ASSIGN_OR_RETURN(
        UniqueFd tap,
        OpenTap(iface.host_dev_name(), absl::StrCat("network_interfaces[", i, "].host_dev_name")));
    (*map->mutable_taps())[iface.iface_id()] = add(std::move(tap));
  }
  if (spec.has_vsock()) {
    ASSIGN_OR_RETURN(ImageRoots::Parent parent,
                     roots_.OpenParent("vsock.uds_path", spec.vsock().uds_path()));
    std::string proc_path = parent.ProcPath();
    struct stat st;
    if (::lstat(proc_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(proc_path.c_str());
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSIGN_OR_RETURN(sockaddr_un address, UnixSocketAddress(proc_path, "vsock.uds_path"));
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
        ::listen(listener.get(), 64) < 0) {
      return ErrnoStatus(absl::StrCat("vsock.uds_path: listening on ", spec.vsock().uds_path()));
    }
    entry->process->vsock_uds = spec.vsock().uds_path();
    map->set_vsock_listener(add(std::move(listener)));
  }
  if (spec.has_metrics()) {
    ASSIGN_OR_RETURN(
        UniqueFd metrics,
        roots_.OpenFile("metrics.metrics_path", spec.metrics().metrics_path(), kOutputFileFlags));
    map->set_metrics(add(std::move(metrics)));
  }
  if (spec.has_logger() && !spec.logger().log_path().empty()) {
    ASSIGN_OR_RETURN(UniqueFd log, roots_.OpenFile("logger.log_path", spec.logger().log_path(),
                                                   kOutputFileFlags));
    map->set_log(add(std::move(log)));
  }
  if (spec.has_serial() && !spec.serial().serial_out_path().empty()) {
    ASSIGN_OR_RETURN(entry->serial_out,
                     roots_.OpenFile("serial.serial_out_path", spec.serial().serial_out_path(),
                                     kOutputFileFlags));
  }
  ASSIGN_OR_RETURN(auto pair, ConsolePair());
  *console = std::move(pair.first);
  map->set_console(add(std::move(pair.second)));
  return absl::OkStatus();
}

void VmManager::InstanceStart(const std::string& vm_id, Done<api::Vm> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) {
    done(valid);
    return;
  }
  Post([this, vm_id, done] {
    absl::StatusOr<VmEntry*> found = FindOr(vm_id);
    if (!found.ok()) return done(found.status());
    VmEntry* entry = *found;
    absl::Status allowed = RequireState(*entry, {api::VM_STATE_CONFIGURING}, "InstanceStart");
    if (!allowed.ok()) return done(allowed);
    const api::VmConfig& spec = entry->vm()->spec();
    if (!spec.has_boot_source()) {
      return done(absl::FailedPreconditionError(absl::StrCat(
          "InstanceStart: vm \"", vm_id, "\" has no boot_source (PutBootSource first)")));
    }
    absl::Status complete = validate::ValidateVmConfig(spec, /*require_boot_source=*/true);
    if (!complete.ok()) return done(complete);
    if (!entry->process.has_value()) {
      return done(absl::FailedPreconditionError(
          absl::StrCat("InstanceStart: vm \"", vm_id, "\" has no VMM")));
    }
    control::Request request;
    control::Boot* boot = request.mutable_boot();
    *boot->mutable_config() = spec;
    std::vector<UniqueFd> fds;
    UniqueFd console;
    absl::Status opened = OpenBootResources(entry, boot->mutable_fds(), &fds, &console, true);
    if (!opened.ok()) return done(opened);  // still CONFIGURING: the client can fix it
    absl::Status limited = WriteCgroupLimits(entry);
    if (!limited.ok()) return done(limited);
    entry->start_requested = absl::Now();
    entry->process->console = std::move(console);
    std::string id = vm_id;
    (void)loop_->Add(entry->process->console.get(),
                     [this, id](uint32_t) { OnConsoleReadable(id); });
    SetState(entry, api::VM_STATE_STARTING, "booting");
    auto shared_fds = std::make_shared<std::vector<UniqueFd>>(std::move(fds));
    WhenReady(entry, [this, id, request, shared_fds, done](absl::Status ready) {
      VmEntry* e = Find(id);
      if (e == nullptr) return done(NotFound(id));
      if (!ready.ok()) return done(ready);
      Call(
          e, request, std::move(*shared_fds),
          [this, id, done](absl::StatusOr<control::Response> response) {
            VmEntry* e = Find(id);
            if (e == nullptr) return done(NotFound(id));
            absl::Status status =
                response.ok() ? VmmConnection::StatusOf(*response) : response.status();
            if (absl::IsUnavailable(status)) {
              // The VMM died while building the VM: it is FAILED, and
              // retrying the call would not help.
              status = absl::InternalError(status.message());
            }
            if (!status.ok()) {
              if (e->state() == api::VM_STATE_STARTING) {
                SetState(e, api::VM_STATE_FAILED, absl::StrCat("boot failed: ", status.message()));
                if (e->process.has_value() && e->process->pidfd.valid()) {
                  ::syscall(SYS_pidfd_send_signal, e->process->pidfd.get(), SIGKILL, nullptr, 0);
                }
              }
              return done(status);
            }
            e->vm()->mutable_status()->mutable_boot_timing()->set_start_to_running_us(
                static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - e->start_requested)));
            SetState(e, api::VM_STATE_RUNNING, "");
            done(e->record.vm());
          });
    });
  });
}

void VmManager::Configure(const std::string& vm_id,
                          std::function<absl::Status(api::VmConfig*)> mutate,
                          Done<api::VmConfig> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, mutate, done] {
    absl::StatusOr<VmEntry*> found = FindOr(vm_id);
    if (!found.ok()) return done(found.status());
    VmEntry* entry = *found;
    absl::Status allowed =
        RequireState(*entry, {api::VM_STATE_CONFIGURING}, "pre-boot configuration");
    if (!allowed.ok()) return done(allowed);
    api::VmConfig config = entry->vm()->spec();
    absl::Status changed = mutate(&config);
    if (changed.ok()) changed = validate::ValidateVmConfig(config, /*require_boot_source=*/false);
    if (changed.ok()) {
      absl::MutexLock lock(&snapshot_mutex_);
      changed = Admit(config, vm_id);
    }
    if (!changed.ok()) return done(changed);
    *entry->vm()->mutable_spec() = config;
    Publish(entry, api::WatchEvent::MODIFIED);
    done(config);
  });
}

absl::StatusOr<api::VmConfig> VmManager::GetConfig(const std::string& vm_id) const {
  ASSIGN_OR_RETURN(api::Vm vm, GetVm(vm_id));
  return vm.spec();
}

void VmManager::Forward(const std::string& vm_id, std::vector<api::VmState> states,
                        std::string what, control::Request request,
                        std::function<void(absl::Status)> fail,
                        std::function<void(VmEntry*, const control::Response&)> then) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return fail(valid);
  Post([this, vm_id, states, what, request, fail, then] {
    absl::StatusOr<VmEntry*> found = FindOr(vm_id);
    if (!found.ok()) return fail(found.status());
    absl::Status allowed = RequireState(**found, states, what);
    if (!allowed.ok()) return fail(allowed);
    Call(*found, request, {}, [this, vm_id, fail, then](absl::StatusOr<control::Response> r) {
      absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
      VmEntry* entry = Find(vm_id);
      if (s.ok() && entry == nullptr) s = NotFound(vm_id);
      if (!s.ok()) return fail(s);
      then(entry, *r);
    });
  });
}

void VmManager::SendCtrlAltDel(const std::string& vm_id, Done<bool> done) {
  control::Request request;
  request.mutable_send_ctrl_alt_del();
  Forward(vm_id, {api::VM_STATE_RUNNING}, "SendCtrlAltDel", request, done,
          [done](VmEntry*, const control::Response&) { done(true); });
}

void VmManager::FlushMetrics(const std::string& vm_id, Done<std::string> done) {
  control::Request request;
  request.mutable_flush_metrics();
  Forward(vm_id, {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}, "FlushMetrics", request, done,
          [this, done](VmEntry* entry, const control::Response& response) {
            {
              absl::MutexLock lock(&snapshot_mutex_);
              metrics_[entry->id()] = response.metrics().json();
            }
            done(response.metrics().json());
          });
}

void VmManager::SetVmState(const std::string& vm_id, const std::string& state, Done<api::Vm> done) {
  if (state != "Paused" && state != "Resumed") {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "vm_state.state: \"", absl::CHexEscape(state), "\" is not one of Paused, Resumed")));
  }
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, state, done] {
    VmEntry* entry = Find(vm_id);
    if (entry == nullptr) return done(NotFound(vm_id));
    // Already there: nothing to do (as Firecracker).
    api::VmState target = state == "Paused" ? api::VM_STATE_PAUSED : api::VM_STATE_RUNNING;
    if (entry->state() == target) return done(entry->record.vm());
    ChangeRunState(vm_id, state, done);
  });
}

void VmManager::ChangeRunState(const std::string& vm_id, const std::string& state,
                               Done<api::Vm> done) {
  control::Request request;
  if (state == "Paused") {
    request.mutable_pause();
    Forward(vm_id, {api::VM_STATE_RUNNING}, "PatchVm Paused", request, done,
            [this, done](VmEntry* entry, const control::Response&) {
              SetState(entry, api::VM_STATE_PAUSED, "paused by the API");
              done(entry->record.vm());
            });
  } else if (state == "Resumed") {
    request.mutable_resume();
    Forward(vm_id, {api::VM_STATE_PAUSED}, "PatchVm Resumed", request, done,
            [this, done](VmEntry* entry, const control::Response&) {
              SetState(entry, api::VM_STATE_RUNNING, "");
              done(entry->record.vm());
            });
  }
}

void VmManager::PatchDrive(const api::PartialDrive& patch, const std::string& vm_id,
                           Done<api::Drive> done) {
  Post([this, patch, vm_id, done] {
    absl::StatusOr<VmEntry*> found = FindOr(vm_id);
    if (!found.ok()) return done(found.status());
    VmEntry* entry = *found;
    absl::Status allowed =
        RequireState(*entry, {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}, "PatchDrive");
    if (!allowed.ok()) return done(allowed);
    int index = -1;
    for (int i = 0; i < entry->vm()->spec().drives_size(); ++i) {
      if (entry->vm()->spec().drives(i).drive_id() == patch.drive_id()) index = i;
    }
    if (index < 0) {
      return done(absl::NotFoundError(absl::StrCat("drive \"", patch.drive_id(), "\" not found")));
    }
    const api::Drive& drive = entry->vm()->spec().drives(index);
    if (patch.has_rate_limiter()) {
      absl::Status limiter =
          validate::ValidateRateLimiter(patch.rate_limiter(), "drive.rate_limiter");
      if (!limiter.ok()) return done(limiter);
    }
    control::Request request;
    request.mutable_patch_drive()->set_drive_id(patch.drive_id());
    if (patch.has_rate_limiter()) {
      *request.mutable_patch_drive()->mutable_rate_limiter() = patch.rate_limiter();
    }
    std::vector<UniqueFd> fds;
    if (patch.has_path_on_host()) {
      absl::StatusOr<UniqueFd> file =
          roots_.OpenFile("drive.path_on_host", patch.path_on_host(), DriveOpenFlags(drive));
      if (!file.ok()) return done(file.status());
      fds.push_back(std::move(*file));
    }
    std::string id = vm_id;
    Call(entry, request, std::move(fds),
         [this, id, index, patch, done](absl::StatusOr<control::Response> r) {
           absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
           VmEntry* e = Find(id);
           if (!s.ok() || e == nullptr) return done(s.ok() ? NotFound(id) : s);
           api::Drive* drive = e->vm()->mutable_spec()->mutable_drives(index);
           if (patch.has_path_on_host()) drive->set_path_on_host(patch.path_on_host());
           if (patch.has_rate_limiter()) *drive->mutable_rate_limiter() = patch.rate_limiter();
           Publish(e, api::WatchEvent::MODIFIED);
           done(*drive);
         });
  });
}

void VmManager::PatchNetworkInterface(const api::PartialNetworkInterface& patch,
                                      const std::string& vm_id, Done<api::NetworkInterface> done) {
  Post([this, patch, vm_id, done] {
    absl::StatusOr<VmEntry*> found = FindOr(vm_id);
    if (!found.ok()) return done(found.status());
    VmEntry* entry = *found;
    absl::Status allowed = RequireState(*entry, {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED},
                                        "PatchNetworkInterface");
    if (!allowed.ok()) return done(allowed);
    int index = -1;
    for (int i = 0; i < entry->vm()->spec().network_interfaces_size(); ++i) {
      if (entry->vm()->spec().network_interfaces(i).iface_id() == patch.iface_id()) index = i;
    }
    if (index < 0) {
      return done(absl::NotFoundError(
          absl::StrCat("network interface \"", patch.iface_id(), "\" not found")));
    }
    for (const auto& [limiter, name] :
         {std::make_pair(&patch.rx_rate_limiter(), "rx_rate_limiter"),
          std::make_pair(&patch.tx_rate_limiter(), "tx_rate_limiter")}) {
      absl::Status s =
          validate::ValidateRateLimiter(*limiter, absl::StrCat("network_interface.", name));
      if (!s.ok()) return done(s);
    }
    control::Request request;
    request.mutable_patch_network_interface()->set_iface_id(patch.iface_id());
    if (patch.has_rx_rate_limiter()) {
      *request.mutable_patch_network_interface()->mutable_rx_rate_limiter() =
          patch.rx_rate_limiter();
    }
    if (patch.has_tx_rate_limiter()) {
      *request.mutable_patch_network_interface()->mutable_tx_rate_limiter() =
          patch.tx_rate_limiter();
    }
    std::string id = vm_id;
    Call(entry, request, {}, [this, id, index, patch, done](absl::StatusOr<control::Response> r) {
      absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
      VmEntry* e = Find(id);
      if (!s.ok() || e == nullptr) return done(s.ok() ? NotFound(id) : s);
      api::NetworkInterface* iface = e->vm()->mutable_spec()->mutable_network_interfaces(index);
      if (patch.has_rx_rate_limiter()) *iface->mutable_rx_rate_limiter() = patch.rx_rate_limiter();
      if (patch.has_tx_rate_limiter()) *iface->mutable_tx_rate_limiter() = patch.tx_rate_limiter();
      Publish(e, api::WatchEvent::MODIFIED);
      done(*iface);
    });
  });
}

void VmManager::PatchBalloon(const std::string& vm_id, uint32_t amount_mib,
                             Done<api::Balloon> done) {
  control::Request request;
  request.mutable_patch_balloon()->set_amount_mib(amount_mib);
  Forward(vm_id, {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}, "PatchBalloon", request, done,
          [this, amount_mib, done](VmEntry* entry, const control::Response&) {
            entry->vm()->mutable_spec()->mutable_balloon()->set_amount_mib(amount_mib);
            Publish(entry, api::WatchEvent::MODIFIED);
            done(entry->vm()->spec().balloon());
          });
}

void VmManager::PatchBalloonStatistics(const std::string& vm_id, uint32_t interval_s,
                                       Done<api::Balloon> done) {
  control::Request request;
  request.mutable_patch_balloon_statistics()->set_stats_polling_interval_s(interval_s);
  Forward(
      vm_id, {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}, "PatchBalloonStatistics", request, done,
      [this, interval_s, done](VmEntry* entry, const control::Response&) {
        entry->vm()->mutable_spec()->mutable_balloon()->set_stats_polling_interval_s(interval_s);
        Publish(entry, api::WatchEvent::MODIFIED);
        done(entry->vm()->spec().balloon());
      });
}

void VmManager::GetBalloonStatistics(const std::string& vm_id, Done<api::BalloonStatistics> done) {
  control::Request request;
  request.mutable_get_balloon_statistics();
  Forward(
      vm_id, {api::VM_STATE_RUNNING, api::VM_STATE_PAUSED}, "GetBalloonStatistics", request, done,
      [done](VmEntry*, const control::Response& response) { done(response.balloon_statistics()); });
}

// ----------------------------------------------------------------------------
// Snapshots.

namespace {

// The memory file a SnapshotLoadParams / CloneVmRequest names: exactly one
// of mem_backend (type "File") and mem_file_path.
absl::StatusOr<std::string> MemoryPath(const api::MemoryBackend* backend, bool has_backend,
                                       const std::string& mem_file_path, const std::string& field) {
  if (has_backend && !mem_file_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": set mem_backend or mem_file_path, not both"));
  }
  if (!has_backend) {
    if (mem_file_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".mem_backend: required"));
    }
    return mem_file_path;
  }
  if (backend->backend_type() == "Uffd") {
    return absl::UnimplementedError(absl::StrCat(
        field, ".mem_backend.backend_type: \"Uffd\" is not implemented by Hearth; use \"File\""));
  }
  if (backend->backend_type() != "File") {
    return absl::InvalidArgumentError(absl::StrCat(field, ".mem_backend.backend_type: \"",
                                                   absl::CHexEscape(backend->backend_type()),
                                                   "\" is not one of File, Uffd"));
  }
  if (backend->backend_path().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".mem_backend.backend_path: required"));
  }
  return backend->backend_path();
}

// Nothing but logger and metrics may be configured before a load: the
// snapshot brings everything else.
bool OnlyLoggerAndMetrics(const api::VmConfig& spec) {
  api::VmConfig rest = spec;
  rest.clear_logger();
  rest.clear_metrics();
  rest.clear_machine_config();
  return rest.ByteSizeLong() == 0;
}

}  // namespace

void VmManager::CreateSnapshot(const std::string& vm_id, const api::SnapshotCreateParams& params,
                               Done<api::CreateSnapshotResponse> done) {
  absl::Status valid = ValidateVmId(vm_id);
  const std::string type = params.snapshot_type().empty() ? "Full" : params.snapshot_type();
  if (valid.ok() && type != "Full" && type != "Diff") {
    valid = absl::InvalidArgumentError(absl::StrCat(
        "params.snapshot_type: \"", absl::CHexEscape(type), "\" is not one of Full, Diff"));
  }
  if (valid.ok() && params.snapshot_path().empty()) {
    valid = absl::InvalidArgumentError("params.snapshot_path: required");
  }
  if (valid.ok() && params.mem_file_path().empty()) {
    valid = absl::InvalidArgumentError("params.mem_file_path: required");
  }
  if (valid.ok() && params.mem_file_path() == params.snapshot_path()) {
    valid = absl::InvalidArgumentError("params.mem_file_path: the same file as snapshot_path");
  }
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, params, type, done] {
    absl::StatusOr<VmEntry*> found = FindOr(vm_id);
    if (!found.ok()) return done(found.status());
    VmEntry* entry = *found;
    absl::Status allowed = RequireState(*entry, {api::VM_STATE_PAUSED}, "CreateSnapshot");
    if (!allowed.ok()) return done(allowed);
    if (type == "Diff" && !entry->vm()->spec().machine_config().track_dirty_pages()) {
      return done(absl::FailedPreconditionError(
          "params.snapshot_type: a Diff snapshot needs machine_config.track_dirty_pages (or "
          "track_dirty_pages on LoadSnapshot)"));
    }
    const int flags = O_RDWR | O_CREAT | O_TRUNC;
    absl::StatusOr<UniqueFd> state =
        roots_.OpenFile("params.snapshot_path", params.snapshot_path(), flags);
    if (!state.ok()) return done(state.status());
    absl::StatusOr<UniqueFd> memory =
        roots_.OpenFile("params.mem_file_path", params.mem_file_path(), flags);
    if (!memory.ok()) return done(memory.status());
    control::Request request;
    request.mutable_create_snapshot()->set_snapshot_type(type);
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(*state));
    fds.push_back(std::move(*memory));
    const absl::Time start = absl::Now();
    Call(
        entry, request, std::move(fds),
        [vm_id, done, start](absl::StatusOr<control::Response> r) {
          absl::Status s = r.ok() ? VmmConnection::StatusOf(*r) : r.status();
          if (!s.ok()) return done(s);
          api::CreateSnapshotResponse response;
          response.set_state_bytes(r->snapshot_created().state_bytes());
          response.set_memory_bytes(r->snapshot_created().memory_bytes());
          response.set_duration_us(
              static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start)));
          LOG(INFO) << "vm " << vm_id << ": snapshot written, " << response.state_bytes()
                    << " state bytes, " << response.memory_bytes() << " memory bytes in "
                    << response.duration_us() << " us";
          done(response);
        },
        kSnapshotCallTimeout);
  });
}

void VmManager::LoadSnapshot(const std::string& vm_id, const api::SnapshotLoadParams& params,
                             Done<api::Vm> done) {
  absl::Status valid = ValidateVmId(vm_id);
  if (!valid.ok()) return done(valid);
  Post([this, vm_id, params, done] { RestoreInto(vm_id, params, {}, done); });
}

void VmManager::RestoreInto(const std::string& vm_id, const api::SnapshotLoadParams& params,
                            std::vector<api::DriveOverride> drive_overrides, Done<api::Vm> done) {
  absl::StatusOr<VmEntry*> found = FindOr(vm_id);
  if (!found.ok()) return done(found.status());
  VmEntry* entry = *found;
  absl::Status allowed = RequireState(*entry, {api::VM_STATE_CONFIGURING}, "LoadSnapshot");
  if (!allowed.ok()) return done(allowed);
  const api::VmConfig previous = entry->vm()->spec();
  if (!OnlyLoggerAndMetrics(previous)) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "LoadSnapshot: vm \"", vm_id,
        "\" is already configured; only logger and metrics may be set before a snapshot load")));
  }
  if (!entry->process.has_value()) {
    return done(
        absl::FailedPreconditionError(absl::StrCat("LoadSnapshot: vm \"", vm_id, "\" has no VMM")));
  }
  if (params.snapshot_path().empty()) {
    return done(absl::InvalidArgumentError("params.snapshot_path: required"));
  }
  absl::StatusOr<std::string> memory_path =
      MemoryPath(&params.mem_backend(), params.has_mem_backend(), params.mem_file_path(), "params");
  if (!memory_path.ok()) return done(memory_path.status());
  if (!params.huge_pages().empty() && params.huge_pages() != "Snapshot" &&
      params.huge_pages() != "None") {
    return done(absl::UnimplementedError(
        absl::StrCat("params.huge_pages: \"", absl::CHexEscape(params.huge_pages()),
                     "\" is not implemented by Hearth (restored memory is mapped from the file)")));
  }
  absl::StatusOr<UniqueFd> state_file =
      roots_.OpenFile("params.snapshot_path", params.snapshot_path(), O_RDONLY);
  if (!state_file.ok()) return done(state_file.status());
  absl::StatusOr<vmm::v1::VmSnapshot> snapshot = snapshot::ReadStateFile(state_file->get());
  if (!snapshot.ok()) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "params.snapshot_path: ", params.snapshot_path(), ": ", snapshot.status().message())));
  }
  absl::StatusOr<UniqueFd> memory_file =
      roots_.OpenFile("params.mem_backend.backend_path", *memory_path, O_RDONLY);
  if (!memory_file.ok()) return done(memory_file.status());

  // The restored VM's spec: the snapshot's, with the overrides.
  api::VmConfig spec = snapshot->config();
  for (int i = 0; i < params.network_overrides_size(); ++i) {
    const api::NetworkOverride& o = params.network_overrides(i);
    bool matched = false;
    for (api::NetworkInterface& iface : *spec.mutable_network_interfaces()) {
      if (iface.iface_id() != o.iface_id()) continue;
      iface.set_host_dev_name(o.host_dev_name());
      matched = true;
    }
    if (!matched) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "params.network_overrides[", i, "].iface_id: the snapshot has no interface \"",
          absl::CHexEscape(o.iface_id()), "\"")));
    }
  }
  if (params.has_vsock_override()) {
    if (!spec.has_vsock()) {
      return done(
          absl::InvalidArgumentError("params.vsock_override: the snapshot has no vsock device"));
    }
    spec.mutable_vsock()->set_uds_path(params.vsock_override().uds_path());
  }
  for (size_t i = 0; i < drive_overrides.size(); ++i) {
    const api::DriveOverride& o = drive_overrides[i];
    bool matched = false;
    for (api::Drive& drive : *spec.mutable_drives()) {
      if (drive.drive_id() != o.drive_id()) continue;
      drive.set_path_on_host(o.path_on_host());
      matched = true;
    }
    if (!matched) {
      return done(absl::InvalidArgumentError(
          absl::StrCat("drive_overrides[", i, "].drive_id: the snapshot has no drive \"",
                       absl::CHexEscape(o.drive_id()), "\"")));
    }
  }
  if (previous.has_logger()) *spec.mutable_logger() = previous.logger();
  if (previous.has_metrics()) *spec.mutable_metrics() = previous.metrics();
  const bool track = params.track_dirty_pages() || params.enable_diff_snapshots();
  spec.mutable_machine_config()->set_track_dirty_pages(track);
  absl::Status usable = validate::ValidateVmConfig(spec, /*require_boot_source=*/false);
  if (usable.ok()) usable = CheckConfigResources(roots_, spec, "snapshot config.");
  if (usable.ok() && spec.has_vsock()) {
    for (const auto& [other_id, other] : entries_) {
      if (other_id != vm_id && Live(other->state()) && other->vm()->spec().has_vsock() &&
          other->vm()->spec().vsock().uds_path() == spec.vsock().uds_path()) {
        usable = absl::InvalidArgumentError(
            absl::StrCat("vsock.uds_path: ", spec.vsock().uds_path(), " is used by vm \"", other_id,
                         "\" (give each restored VM its own with vsock_override)"));
      }
    }
  }
  if (usable.ok()) {
    absl::MutexLock lock(&snapshot_mutex_);
    usable = Admit(spec, vm_id);
  }
  if (!usable.ok()) return done(usable);

  *entry->vm()->mutable_spec() = spec;
  control::Request request;
  control::LoadSnapshot* load = request.mutable_load_snapshot();
  load->set_resume_vm(params.resume_vm());
  load->set_track_dirty_pages(track);
  std::vector<UniqueFd> fds;
  UniqueFd console;
  absl::Status opened = OpenBootResources(entry, load->mutable_fds(), &fds, &console, false);
  if (!opened.ok()) {
    *entry->vm()->mutable_spec() = previous;
    return done(opened);
  }
  load->mutable_fds()->set_snapshot_state(static_cast<int32_t>(fds.size()));
  fds.push_back(std::move(*state_file));
  load->mutable_fds()->set_snapshot_memory(static_cast<int32_t>(fds.size()));
  fds.push_back(std::move(*memory_file));
  absl::Status limited = WriteCgroupLimits(entry);
  if (!limited.ok()) {
    *entry->vm()->mutable_spec() = previous;
    return done(limited);
  }
  entry->start_requested = absl::Now();
  entry->process->console = std::move(console);
  std::string id = vm_id;
  (void)loop_->Add(entry->process->console.get(), [this, id](uint32_t) { OnConsoleReadable(id); });
  SetState(entry, api::VM_STATE_STARTING, "restoring a snapshot");
  auto shared_fds = std::make_shared<std::vector<UniqueFd>>(std::move(fds));
  const bool resume = params.resume_vm();
  WhenReady(entry, [this, id, request, shared_fds, previous, resume, done](absl::Status ready) {
    VmEntry* e = Find(id);
    if (e == nullptr) return done(NotFound(id));
    if (!ready.ok()) return done(absl::InternalError(ready.message()));
    Call(
        e, request, std::move(*shared_fds),
        [this, id, previous, resume, done](absl::StatusOr<control::Response> response) {
          VmEntry* e = Find(id);
          if (e == nullptr) return done(NotFound(id));
          absl::Status status =
              response.ok() ? VmmConnection::StatusOf(*response) : response.status();
          if (!status.ok()) {
            if (e->state() == api::VM_STATE_STARTING && e->process.has_value() &&
                absl::IsInvalidArgument(status)) {
              // Refused before anything was built: the VMM still waits,
              // and the VM is as it was.
              if (loop_->Watching(e->process->console.get())) {
                (void)loop_->Remove(e->process->console.get());
              }
              e->process->console.Reset();
              *e->vm()->mutable_spec() = previous;
              SetState(e, api::VM_STATE_CONFIGURING,
                       absl::StrCat("snapshot load refused: ", status.message()));
            } else if (absl::IsUnavailable(status)) {
              status = absl::InternalError(status.message());
            }
            return done(status);
          }
          e->vm()->mutable_status()->mutable_boot_timing()->set_start_to_running_us(
              static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - e->start_requested)));
          SetState(e, resume ? api::VM_STATE_RUNNING : api::VM_STATE_PAUSED,
                   resume ? "" : "restored from a snapshot, paused");
          done(e->record.vm());
        },
        kSnapshotCallTimeout);
  });
}

void VmManager::CloneVm(const api::CloneVmRequest& request, Done<api::CloneVmResponse> done) {
  absl::Status valid;
  if (request.snapshot_path().empty())
    valid = absl::InvalidArgumentError("snapshot_path: required");
  if (valid.ok() && (request.clones().empty() || request.clones_size() > 64)) {
    valid = absl::InvalidArgumentError(
        absl::StrCat("clones: 1 to 64 clones per request, got ", request.clones_size()));
  }
  std::set<std::string> ids;
  for (int i = 0; valid.ok() && i < request.clones_size(); ++i) {
    const api::CloneSpec& clone = request.clones(i);
    valid = ValidateVmId(clone.vm_id());
    if (!valid.ok())
      valid = absl::InvalidArgumentError(absl::StrCat("clones[", i, "].", valid.message()));
    if (valid.ok() && !ids.insert(clone.vm_id()).second) {
      valid = absl::InvalidArgumentError(
          absl::StrCat("clones[", i, "].vm_id: \"", clone.vm_id(), "\" appears twice"));
    }
    if (valid.ok()) valid = ValidateLabels(clone.labels());
    if (valid.ok() && clone.has_mmds()) {
      valid = absl::UnimplementedError(absl::StrCat(
          "clones[", i, "].mmds: MMDS is not implemented by Hearth yet (no guest-facing MMDS)"));
    }
  }
  if (valid.ok()) {
    valid = MemoryPath(&request.mem_backend(), request.has_mem_backend(), "", "").status();
  }
  if (!valid.ok()) return done(valid);
  Post([this, request, done] {
    // The snapshot's machine, read once: the clones are admitted against
    // the host's capacity together, before any VMM is started, and hold
    // their size from the start.
    absl::StatusOr<UniqueFd> state_file =
        roots_.OpenFile("snapshot_path", request.snapshot_path(), O_RDONLY);
    if (!state_file.ok()) return done(state_file.status());
    absl::StatusOr<vmm::v1::VmSnapshot> snapshot = snapshot::ReadStateFile(state_file->get());
    if (!snapshot.ok()) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "snapshot_path: ", request.snapshot_path(), ": ", snapshot.status().message())));
    }
    api::VmConfig sized;
    *sized.mutable_machine_config() = snapshot->config().machine_config();
    validate::FillMachineConfigDefaults(sized.mutable_machine_config());
    uint32_t fresh = 0;
    for (const api::CloneSpec& clone : request.clones()) {
      if (Find(clone.vm_id()) == nullptr) ++fresh;
    }
    if (fresh > 0) {
      absl::MutexLock lock(&snapshot_mutex_);
      absl::Status admitted = Admit(sized, "", fresh);
      if (!admitted.ok()) {
        return done(
            absl::Status(admitted.code(), absl::StrCat(fresh, " clones: ", admitted.message())));
      }
    }
    // Which clones exist already (from this same request: kept), which are new.
    std::vector<std::string> created;
    std::vector<std::string> keys;
    for (int i = 0; i < request.clones_size(); ++i) {
      const api::CloneSpec& clone = request.clones(i);
      std::string text;
      google::protobuf::TextFormat::PrintToString(clone, &text);
      std::string key = absl::StrCat(request.snapshot_path(), "\n",
                                     request.mem_backend().backend_path(), "\n", text);
      keys.push_back(key);
      if (VmEntry* existing = Find(clone.vm_id())) {
        if (existing->record.clone_key() != key) {
          for (const std::string& id : created) DeleteVm(id, true, [](absl::StatusOr<bool>) {});
          return done(absl::AlreadyExistsError(
              absl::StrCat("clones[", i, "].vm_id: vm \"", clone.vm_id(),
                           "\" exists and was not made by this clone request")));
        }
        continue;
      }
      absl::Status added = AddVm(clone.vm_id(), clone.labels(), sized, api::VmConfig(), key);
      if (!added.ok()) {
        for (const std::string& id : created) DeleteVm(id, true, [](absl::StatusOr<bool>) {});
        DeleteVm(clone.vm_id(), true, [](absl::StatusOr<bool>) {});
        return done(absl::Status(added.code(), absl::StrCat("clones[", i, "] (vm \"", clone.vm_id(),
                                                            "\"): ", added.message())));
      }
      created.push_back(clone.vm_id());
    }
    // Restore into every new clone at once; answer when all have.
    struct Progress {
      size_t remaining = 0;
      absl::Status first_error;
    };
    auto progress = std::make_shared<Progress>();
    auto finish = [this, request, created, progress, done] {
      if (!progress->first_error.ok()) {
        for (const std::string& id : created) DeleteVm(id, true, [](absl::StatusOr<bool>) {});
        return done(progress->first_error);
      }
      api::CloneVmResponse response;
      for (const api::CloneSpec& clone : request.clones()) {
        if (VmEntry* e = Find(clone.vm_id())) *response.add_vms() = e->record.vm();
      }
      done(response);
    };
    for (int i = 0; i < request.clones_size(); ++i) {
      if (std::find(created.begin(), created.end(), request.clones(i).vm_id()) != created.end()) {
        ++progress->remaining;
      }
    }
    if (progress->remaining == 0) return finish();
    for (int i = 0; i < request.clones_size(); ++i) {
      const api::CloneSpec& clone = request.clones(i);
      if (std::find(created.begin(), created.end(), clone.vm_id()) == created.end()) continue;
      api::SnapshotLoadParams params;
      params.set_snapshot_path(request.snapshot_path());
      *params.mutable_mem_backend() = request.mem_backend();
      params.set_track_dirty_pages(request.track_dirty_pages());
      params.set_resume_vm(clone.resume_vm());
      *params.mutable_network_overrides() = clone.network_overrides();
      if (clone.has_vsock_override()) *params.mutable_vsock_override() = clone.vsock_override();
      std::vector<api::DriveOverride> drives(clone.drive_overrides().begin(),
                                             clone.drive_overrides().end());
      std::string id = clone.vm_id();
      RestoreInto(
          id, params, std::move(drives), [progress, finish, i, id](absl::StatusOr<api::Vm> vm) {
            if (!vm.ok() && progress->first_error.ok()) {
              progress->first_error = absl::Status(
                  vm.status().code(),
                  absl::StrCat("clones[", i, "] (vm \"", id, "\"): ", vm.status().message()));
            }
            if (--progress->remaining == 0) finish();
          });
    }
  });
}

// ----------------------------------------------------------------------------
// Reads, watches, console.

absl::StatusOr<api::Vm> VmManager::GetVm(const std::string& vm_id) const {
  RETURN_IF_ERROR(ValidateVmId(vm_id));
  absl::MutexLock lock(&snapshot_mutex_);
  auto it = snapshot_.find(vm_id);
  if (it == snapshot_.end()) return NotFound(vm_id);
  return it->second;
}

absl::StatusOr<api::ListVmsResponse> VmManager::ListVms(const api::ListVmsRequest& request) const {
  ASSIGN_OR_RETURN(LabelSelector selector, LabelSelector::Parse(request.label_selector()));
  std::string after;
  if (!request.page_token().empty()) {
    std::string token;
    if (!absl::WebSafeBase64Unescape(request.page_token(), &token)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    std::vector<std::string> parts = absl::StrSplit(token, absl::MaxSplits('\n', 1));
    if (parts.size() != 2 || parts[0] != request.label_selector()) {
      return absl::InvalidArgumentError(
          "page_token: not from a ListVms with the same label_selector");
    }
    after = parts[1];
  }
  uint32_t page_size = request.page_size() == 0 ? 100 : std::min(request.page_size(), 1000u);
  api::ListVmsResponse response;
  absl::MutexLock lock(&snapshot_mutex_);
  response.set_resource_version(resource_version_);
  for (auto it = snapshot_.upper_bound(after); it != snapshot_.end(); ++it) {
    if (!selector.Matches(it->second.labels())) continue;
    if (static_cast<uint32_t>(response.vms_size()) == page_size) {
      response.set_next_page_token(absl::WebSafeBase64Escape(
          absl::StrCat(request.label_selector(), "\n", response.vms().rbegin()->vm_id())));
      break;
    }
    *response.add_vms() = it->second;
  }
  return response;
}

api::HostInfo VmManager::GetHostInfo() const {
  api::HostInfo info;
  char hostname[256] = {};
  ::gethostname(hostname, sizeof(hostname) - 1);
  info.set_hostname(hostname);
  info.set_kvm_kind(KvmKind());
  info.set_cgroup_version(static_cast<uint32_t>(cgroup_version_));
  info.mutable_capacity()->set_vcpus(options_.max_vcpus);
  info.mutable_capacity()->set_memory_mib(options_.max_memory_mib);
  info.mutable_capacity()->set_max_vms(options_.max_vms);
  *info.mutable_allocated() = Allocated();
  struct utsname uts;
  ::uname(&uts);
  info.mutable_versions()->set_agent(kAgentVersion);
  info.mutable_versions()->set_vmm(kAgentVersion);
  info.mutable_versions()->set_jailer(kAgentVersion);
  info.mutable_versions()->set_kernel(uts.release);
  for (const char* feature : {"vsock", "balloon", "entropy", "rate-limiters", "watch",
                              "idempotent-create", "reattach", "snapshots", "clone"}) {
    info.add_features(feature);
  }
  info.add_features(cgroup_version_ == 2 ? "cgroup-v2" : "cgroup-v1");
  return info;
}

absl::StatusOr<int> VmManager::Watch(const api::WatchVmsRequest& request,
                                     std::function<void(const api::WatchEvent&)> sink) {
  ASSIGN_OR_RETURN(LabelSelector selector, LabelSelector::Parse(request.label_selector()));
  if (!request.vm_id().empty()) RETURN_IF_ERROR(ValidateVmId(request.vm_id()));
  auto matches = [&](const api::Vm& vm) {
    return (request.vm_id().empty() || vm.vm_id() == request.vm_id()) &&
           selector.Matches(vm.labels());
  };
  absl::MutexLock lock(&snapshot_mutex_);
  const uint64_t from = request.resource_version();
  if (from == 0) {
    for (const auto& [id, vm] : snapshot_) {
      if (!matches(vm)) continue;
      api::WatchEvent event;
      event.set_type(api::WatchEvent::ADDED);
      *event.mutable_vm() = vm;
      event.set_resource_version(vm.resource_version());
      sink(event);
    }
    api::WatchEvent bookmark;
    bookmark.set_type(api::WatchEvent::BOOKMARK);
    bookmark.set_resource_version(resource_version_);
    sink(bookmark);
  } else {
    if (from > resource_version_) {
      return absl::OutOfRangeError(absl::StrCat(
          "resource_version ", from, " is in the future (current ", resource_version_, ")"));
    }
    uint64_t oldest =
        history_.empty() ? resource_version_ + 1 : history_.front().resource_version();
    if (from + 1 < oldest) {
      return absl::OutOfRangeError(
          absl::StrCat("resource_version ", from, " is older than the retained history (oldest ",
                       oldest, "): list again and watch from the list's resource_version"));
    }
    for (const api::WatchEvent& event : history_) {
      if (event.resource_version() > from && matches(event.vm())) sink(event);
    }
  }
  int id = next_watcher_++;
  watchers_[id] = Watcher{std::move(selector), request.vm_id(), std::move(sink)};
  return id;
}

void VmManager::Unwatch(int id) {
  absl::MutexLock lock(&snapshot_mutex_);
  watchers_.erase(id);
}

absl::StatusOr<std::shared_ptr<ConsoleBuffer>> VmManager::Console(const std::string& vm_id) const {
  RETURN_IF_ERROR(ValidateVmId(vm_id));
  absl::MutexLock lock(&snapshot_mutex_);
  auto it = consoles_.find(vm_id);
  if (it == consoles_.end()) return NotFound(vm_id);
  return it->second;
}

void VmManager::ConsoleInput(const std::string& vm_id, std::string data) {
  Post([this, vm_id, data] {
    VmEntry* entry = Find(vm_id);
    if (entry == nullptr || !entry->process.has_value() || !entry->process->console.valid()) return;
    // Input beyond what the socket takes now is dropped: a client cannot
    // make the agent buffer without bound.
    (void)!::send(entry->process->console.get(), data.data(), data.size(),
                  MSG_DONTWAIT | MSG_NOSIGNAL);
  });
}

void VmManager::FlushAllMetrics(std::function<void()> done) {
  Post([this, done] {
    std::vector<std::string> ids;
    for (const auto& [id, entry] : entries_) {
      if (entry->state() == api::VM_STATE_RUNNING || entry->state() == api::VM_STATE_PAUSED) {
        ids.push_back(id);
      }
    }
    if (ids.empty()) return done();
    auto remaining = std::make_shared<size_t>(ids.size());
    for (const std::string& id : ids) {
      // Runs on the supervisor thread: the counter needs no lock.
      FlushMetrics(id, [remaining, done](absl::StatusOr<std::string>) {
        if (--*remaining == 0) done();
      });
    }
  });
}

void VmManager::SendBookmarks() {
  absl::MutexLock lock(&snapshot_mutex_);
  api::WatchEvent bookmark;
  bookmark.set_type(api::WatchEvent::BOOKMARK);
  bookmark.set_resource_version(resource_version_);
  for (const auto& [id, watcher] : watchers_) watcher.sink(bookmark);
}

std::map<std::string, std::string> VmManager::LastMetrics() const {
  absl::MutexLock lock(&snapshot_mutex_);
  return metrics_;
}

}  // namespace hearth::agent
