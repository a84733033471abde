// Registry: the agent's public view of its VMs, shared by the supervisor
// thread (which publishes every change) and gRPC threads (which read and
// watch). It holds the last published state of every VM, the agent-wide
// resource version, a bounded history of changes for WatchVms to resume
// from, the watchers, each VM's console buffer and last metrics, and the
// admission decision against the host's capacity. Pure code under one
// mutex: no I/O (persistence is the manager's), unit-tested directly.
//
// The watch contract: a watch from version 0 lists every matching VM
// (ADDED) and a BOOKMARK at the current version, then follows changes. A
// watch from N replays the retained changes after N; N older than the
// retained history (or from before an agent restart: history lives in
// memory only) is OUT_OF_RANGE, and the client lists again. N ahead of the
// current version is OUT_OF_RANGE too. The history keeps at most
// `history_entries` changes and `history_bytes` bytes of them.
#ifndef HEARTH_AGENT_REGISTRY_H_
#define HEARTH_AGENT_REGISTRY_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/console_buffer.h"
#include "agent/labels.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {

struct Capacity {
  uint32_t max_vcpus = 0;
  uint64_t max_memory_mib = 0;
  uint32_t max_vms = 0;
};

struct HistoryLimits {
  size_t entries = 4096;
  size_t bytes = 64 << 20;
};

class Registry {
 public:
  using Sink = std::function<void(const hearth::v1::WatchEvent&)>;

  Registry(Capacity capacity, HistoryLimits history)
      : capacity_(capacity), history_limits_(history) {}

  // At start-up: the VMs loaded from the state directory, and the version
  // to continue from (no events, no history).
  void Load(uint64_t version, const std::vector<hearth::v1::Vm>& vms);

  // Records a change of `vm`: assigns it the next resource version, stores
  // it (or removes it, for DELETED), appends it to the history and hands it
  // to every matching watcher. Returns the new version.
  uint64_t Publish(hearth::v1::Vm* vm, hearth::v1::WatchEvent::Type type);
  uint64_t version() const;

  // Reads.
  absl::StatusOr<hearth::v1::Vm> Get(const std::string& vm_id) const;
  absl::StatusOr<hearth::v1::ListVmsResponse> List(const hearth::v1::ListVmsRequest& request) const;

  // Watching (see the contract above). `sink` runs under the registry's
  // lock, in order: it must only queue. Returns an id for Unwatch.
  absl::StatusOr<int> Watch(const hearth::v1::WatchVmsRequest& request, Sink sink);
  void Unwatch(int id);
  size_t watchers() const;
  // A BOOKMARK at the current version to every watcher.
  void SendBookmarks();
  // What the history holds now (tests, metrics).
  size_t history_entries() const;
  size_t history_bytes() const;

  // Capacity. Whether `count` more VMs sized like `config` fit, not
  // counting `except_vm` (which they replace): RESOURCE_EXHAUSTED names
  // the limit. Allocated: what the live VMs other than `except_vm` use.
  absl::Status Admit(const hearth::v1::VmConfig& config, const std::string& except_vm,
                     uint32_t count = 1) const;
  hearth::v1::HostAllocation Allocated(const std::string& except_vm = "") const;
  const Capacity& capacity() const { return capacity_; }

  // Each VM's console (kept after the VM ends, until it is deleted) and
  // last device metrics.
  void SetConsole(const std::string& vm_id, std::shared_ptr<ConsoleBuffer> console);
  absl::StatusOr<std::shared_ptr<ConsoleBuffer>> Console(const std::string& vm_id) const;
  void SetMetrics(const std::string& vm_id, std::string json);
  std::map<std::string, std::string> LastMetrics() const;
  // Forgets the console and metrics of a deleted VM.
  void Forget(const std::string& vm_id);

 private:
  hearth::v1::HostAllocation AllocatedLocked(const std::string& except_vm) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const Capacity capacity_;
  const HistoryLimits history_limits_;

  mutable absl::Mutex mutex_;
  std::map<std::string, hearth::v1::Vm> vms_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::shared_ptr<ConsoleBuffer>> consoles_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::string> metrics_ ABSL_GUARDED_BY(mutex_);
  uint64_t version_ ABSL_GUARDED_BY(mutex_) = 0;
  std::deque<hearth::v1::WatchEvent> history_ ABSL_GUARDED_BY(mutex_);
  size_t history_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  struct Watcher {
    LabelSelector selector;
    std::string vm_id;
    Sink sink;
  };
  std::map<int, Watcher> watchers_ ABSL_GUARDED_BY(mutex_);
  int next_watcher_ ABSL_GUARDED_BY(mutex_) = 1;
};

// NOT_FOUND "vm "<id>" not found".
absl::Status VmNotFound(const std::string& vm_id);

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_REGISTRY_H_
