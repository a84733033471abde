// HearthService's two streams: WatchVms (a write reactor fed by the
// registry's watch sink, one write in flight, bounded queue) and
// StreamConsole (a bidi reactor over a VM's console buffer).
#include <deque>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/field_limits.h"
#include "agent/service.h"
#include "common/status_macros.h"

namespace hearth::agent {

namespace api = ::hearth::v1;

// ----------------------------------------------------------------------------
// Streams.

namespace {

// WatchVms: the manager's sink queues events (under the manager's lock);
// one write is in flight at a time. A client that falls more than
// kMaxQueued events behind gets RESOURCE_EXHAUSTED and resumes from the
// last version it saw, instead of making the agent buffer without bound.
class WatchReactor : public grpc::ServerWriteReactor<api::WatchEvent> {
 public:
  static constexpr size_t kMaxQueued = 10000;
  // And at most this many bytes of them: a stalled client of a host whose
  // VMs carry large labels must not make the agent buffer gigabytes.
  static constexpr size_t kMaxQueuedBytes = 16 << 20;

  WatchReactor(VmApi* manager, ApiMetrics* metrics, const api::WatchVmsRequest& request)
      : manager_(manager), metrics_(metrics), start_(absl::Now()) {
    absl::Status bounded = CheckFieldSizes(request);
    absl::StatusOr<int> id =
        bounded.ok()
            ? manager_->Watch(request, [this](const api::WatchEvent& event) { Enqueue(event); })
            : absl::StatusOr<int>(bounded);
    if (!id.ok()) {
      absl::MutexLock lock(&mutex_);
      FinishLocked(id.status());
      return;
    }
    watch_id_ = *id;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mutex_);
    writing_ = false;
    if (!queue_.empty()) {
      queued_bytes_ -= queue_.front().ByteSizeLong();
      queue_.pop_front();
    }
    if (!ok) {
      FinishLocked(absl::CancelledError("the client went away"));
      return;
    }
    if (finish_after_write_.has_value()) {
      absl::Status status = *finish_after_write_;
      finish_after_write_.reset();
      FinishLocked(status);
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mutex_);
    FinishLocked(absl::CancelledError("cancelled by the client"));
  }

  void OnDone() override {
    if (watch_id_ > 0) manager_->Unwatch(watch_id_);
    metrics_->Record("WatchVms", code_, absl::Now() - start_);
    delete this;
  }

 private:
  void Enqueue(const api::WatchEvent& event) {
    absl::MutexLock lock(&mutex_);
    if (finished_ || finish_after_write_.has_value()) return;
    if (queue_.size() >= kMaxQueued || queued_bytes_ + event.ByteSizeLong() > kMaxQueuedBytes) {
      absl::Status behind = absl::ResourceExhaustedError(absl::StrCat(
          "the watcher fell more than ", kMaxQueued, " events or ", kMaxQueuedBytes >> 20,
          " MiB behind; watch again from resource_version ", last_sent_));
      if (writing_) {
        finish_after_write_ = behind;
      } else {
        FinishLocked(behind);
      }
      return;
    }
    queued_bytes_ += event.ByteSizeLong();
    queue_.push_back(event);
    WriteNextLocked();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (writing_ || finished_ || queue_.empty()) return;
    writing_ = true;
    last_sent_ = queue_.front().resource_version();
    StartWrite(&queue_.front());
  }

  void FinishLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_) return;
    finished_ = true;
    code_ = status.code();
    Finish(ToGrpcStatus(status));
  }

  VmApi* const manager_;
  ApiMetrics* const metrics_;
  const absl::Time start_;
  int watch_id_ = 0;
  absl::Mutex mutex_;
  std::deque<api::WatchEvent> queue_ ABSL_GUARDED_BY(mutex_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  std::optional<absl::Status> finish_after_write_ ABSL_GUARDED_BY(mutex_);
  uint64_t last_sent_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::StatusCode code_ = absl::StatusCode::kOk;
};

// StreamConsole: reads requests (open, then input) and writes the VM's
// console buffer from the subscriber's offset on, one chunk in flight at a
// time; the buffer wakes it when output arrives or the VM ends.
class ConsoleReactor : public grpc::ServerBidiReactor<api::ConsoleRequest, api::ConsoleChunk> {
 public:
  static constexpr size_t kMaxSubscribers = 64;
  static constexpr size_t kChunkBytes = 32 * 1024;

  ConsoleReactor(VmApi* manager, ApiMetrics* metrics)
      : manager_(manager), metrics_(metrics), start_(absl::Now()), link_(std::make_shared<Link>()) {
    link_->reactor = this;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the client closed its side: output goes on
    if (!opened_) {
      absl::Status opened = Open();
      if (!opened.ok()) {
        absl::MutexLock lock(&mutex_);
        FinishLocked(opened);
        return;
      }
    } else if (request_.has_open()) {
      absl::MutexLock lock(&mutex_);
      FinishLocked(absl::InvalidArgumentError("open: only the first request may open"));
      return;
    } else if (!request_.input().empty()) {
      manager_->ConsoleInput(vm_id_, request_.input());
    }
    {
      absl::MutexLock lock(&mutex_);
      if (finished_) return;
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mutex_);
      writing_ = false;
      if (!ok) {
        FinishLocked(absl::CancelledError("the client went away"));
        return;
      }
    }
    Pump();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mutex_);
    FinishLocked(absl::CancelledError("cancelled by the client"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&link_->mutex);
      link_->reactor = nullptr;
    }
    if (buffer_ != nullptr && subscription_ > 0) buffer_->Unsubscribe(subscription_);
    metrics_->Record("StreamConsole", code_, absl::Now() - start_);
    delete this;
  }

 private:
  // What the buffer's wake-up holds: the reactor until it is done.
  struct Link {
    absl::Mutex mutex;
    ConsoleReactor* reactor ABSL_GUARDED_BY(mutex) = nullptr;
  };

  absl::Status Open() {
    if (!request_.has_open()) {
      return absl::InvalidArgumentError("the first request must be `open`");
    }
    vm_id_ = request_.open().vm_id();
    ASSIGN_OR_RETURN(buffer_, manager_->Console(vm_id_));
    if (buffer_->subscribers() >= kMaxSubscribers) {
      return absl::ResourceExhaustedError(absl::StrCat("vm \"", vm_id_, "\" already has ",
                                                       kMaxSubscribers, " console subscribers"));
    }
    {
      absl::MutexLock lock(&mutex_);
      replay_end_ = buffer_->end();
      offset_ = request_.open().replay() ? buffer_->begin() : replay_end_;
    }
    opened_ = true;
    std::shared_ptr<Link> link = link_;
    subscription_ = buffer_->Subscribe([link] {
      absl::MutexLock lock(&link->mutex);
      if (link->reactor != nullptr) link->reactor->Pump();
    });
    Pump();
    return absl::OkStatus();
  }

  void Pump() {
    absl::MutexLock lock(&mutex_);
    if (finished_ || writing_ || buffer_ == nullptr) return;
    ConsoleBuffer::Chunk chunk = buffer_->Read(offset_, kChunkBytes);
    if (!chunk.data.empty()) {
      out_.set_data(std::move(chunk.data));
      out_.set_offset(chunk.offset);
      out_.set_dropped_bytes(chunk.dropped);
      out_.set_replay(chunk.offset < replay_end_);
      offset_ = chunk.offset + out_.data().size();
      writing_ = true;
      StartWrite(&out_);
    } else if (chunk.closed) {
      FinishLocked(absl::OkStatus());  // the VM ended and all output is out
    }
  }

  void FinishLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_) return;
    finished_ = true;
    code_ = status.code();
    Finish(ToGrpcStatus(status));
  }

  VmApi* const manager_;
  ApiMetrics* const metrics_;
  const absl::Time start_;
  std::shared_ptr<Link> link_;
  api::ConsoleRequest request_;  // the read in flight
  bool opened_ = false;          // reactions that read run one at a time
  std::string vm_id_;
  std::shared_ptr<ConsoleBuffer> buffer_;
  int subscription_ = 0;
  absl::Mutex mutex_;
  api::ConsoleChunk out_ ABSL_GUARDED_BY(mutex_);
  uint64_t offset_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t replay_end_ ABSL_GUARDED_BY(mutex_) = 0;
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  absl::StatusCode code_ = absl::StatusCode::kOk;
};

}  // namespace

grpc::ServerWriteReactor<api::WatchEvent>* HearthService::WatchVms(
    Context*, const api::WatchVmsRequest* request) {
  return new WatchReactor(manager_, metrics_, *request);
}

grpc::ServerBidiReactor<api::ConsoleRequest, api::ConsoleChunk>* HearthService::StreamConsole(
    Context*) {
  return new ConsoleReactor(manager_, metrics_);
}

}  // namespace hearth::agent
