#include "vmm/devices/virtio/block/block.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {
namespace {

// Largest number of data segments per request the device accepts (config
// seg_max): the queue size less the header and status descriptors.
constexpr uint32_t kSegMax = kMaxQueueSize - 2;

// Preadv/pwritev all of `iovecs` at `offset`, retrying short transfers.
absl::Status Transfer(int fd, std::vector<iovec> iovecs, uint64_t offset, bool write) {
  size_t index = 0;
  while (index < iovecs.size()) {
    ssize_t n = RetryOnEintr([&] {
      return write ? ::pwritev(fd, &iovecs[index],
                               static_cast<int>(std::min<size_t>(iovecs.size() - index, IOV_MAX)),
                               static_cast<off_t>(offset))
                   : ::preadv(fd, &iovecs[index],
                              static_cast<int>(std::min<size_t>(iovecs.size() - index, IOV_MAX)),
                              static_cast<off_t>(offset));
    });
    if (n < 0) return ErrnoStatus(write ? "pwritev" : "preadv");
    if (n == 0) return absl::DataLossError("unexpected end of the backing file");
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (index < iovecs.size() && left >= iovecs[index].iov_len) {
      left -= iovecs[index].iov_len;
      ++index;
    }
    if (index < iovecs.size() && left > 0) {
      iovecs[index].iov_base = static_cast<uint8_t*>(iovecs[index].iov_base) + left;
      iovecs[index].iov_len -= left;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> DriveSectors(int fd, const std::string& drive_id) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return ErrnoStatus(absl::StrCat("fstat drive ", drive_id));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drive ", drive_id, ": backing file is not a regular file or block device"));
  }
  uint64_t bytes = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    off_t end = ::lseek(fd, 0, SEEK_END);
    if (end < 0) return ErrnoStatus(absl::StrCat("lseek drive ", drive_id));
    bytes = static_cast<uint64_t>(end);
  }
  return bytes / kSectorSize;
}

absl::StatusOr<std::shared_ptr<Block>> Block::Create(std::string drive_id, UniqueFd file,
                                                     bool read_only,
                                                     std::unique_ptr<vmm::RateLimiter> limiter) {
  absl::StatusOr<uint64_t> capacity = DriveSectors(file.get(), drive_id);
  if (!capacity.ok()) return capacity.status();
  return std::shared_ptr<Block>(
      new Block(std::move(drive_id), std::move(file), *capacity, read_only, std::move(limiter)));
}

Block::Block(std::string drive_id, UniqueFd file, uint64_t capacity, bool read_only,
             std::unique_ptr<vmm::RateLimiter> limiter)
    : drive_id_(std::move(drive_id)),
      read_only_(read_only),
      file_(std::move(file)),
      limiter_(std::move(limiter)),
      capacity_(capacity) {}

Block::~Block() { Reset(); }

uint64_t Block::features() const {
  return kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx | kBlkFFlush | kBlkFSegMax |
         (read_only_ ? kBlkFRo : 0);
}

uint64_t Block::capacity() const {
  absl::MutexLock lock(&config_mutex_);
  return capacity_;
}

void Block::ReadConfig(uint64_t offset, absl::Span<uint8_t> data) {
  // struct virtio_blk_config: capacity u64 @0, size_max u32 @8, seg_max u32
  // @12; the rest (geometry, blk_size, topology...) is not offered.
  uint8_t config[16] = {};
  {
    absl::MutexLock lock(&config_mutex_);
    std::memcpy(config, &capacity_, 8);
  }
  std::memcpy(config + 12, &kSegMax, 4);
  ReadConfigBytes(config, offset, data);
}

absl::Status Block::Activate(ActivateContext context) {
  if (context.queues.empty() || !context.queues[0].has_value()) {
    return absl::FailedPreconditionError("block: request queue not set up");
  }
  RETURN_IF_ERROR(limiter_->Watch(context.event_loop, [this] { Process(); }));
  active_ = std::move(context);
  metrics_.activations.Add();
  Process();
  return absl::OkStatus();
}

void Block::Reset() {
  if (!active_.has_value()) return;
  limiter_->Unwatch(active_->event_loop);
  active_.reset();
}

absl::Status Block::UpdateBacking(UniqueFd file) {
  absl::StatusOr<uint64_t> capacity = DriveSectors(file.get(), drive_id_);
  if (!capacity.ok()) return capacity.status();
  file_ = std::move(file);
  {
    absl::MutexLock lock(&config_mutex_);
    capacity_ = *capacity;
  }
  generation_.fetch_add(1);
  if (active_.has_value()) active_->interrupt->SignalConfigChange();
  return absl::OkStatus();
}

void Block::UpdateRateLimiter(const vmm::RateLimiterConfig& config) {
  limiter_->Update(config);
  if (active_.has_value()) {
    absl::Status watched = limiter_->Watch(active_->event_loop, [this] { Process(); });
    if (!watched.ok()) LOG(ERROR) << name() << ": rate limiter timer: " << watched.message();
  }
  Process();
}

void Block::ProcessQueue(size_t) {
  metrics_.notifications.Add();
  Process();
}

uint8_t Block::Execute(const DescriptorChain& chain, const BlockRequest& request,
                       uint32_t* written) {
  *written = 0;
  memory::GuestMemory* memory = active_->memory;
  switch (request.type) {
    case kBlkTIn:
    case kBlkTOut: {
      bool write = request.type == kBlkTOut;
      absl::StatusOr<std::vector<iovec>> iovecs =
          write ? ReadableIovecs(*memory, chain, 16, request.data_length)
                : WritableIovecs(*memory, chain, 0, request.data_length);
      absl::Status status = iovecs.ok() ? Transfer(file_.get(), std::move(*iovecs),
                                                   request.sector * kSectorSize, write)
                                        : iovecs.status();
      if (!status.ok()) {
        LOG_EVERY_N(WARNING, 100) << name() << ": " << status.message();
        return kBlkSIoErr;
      }
      if (write) {
        metrics_.write_bytes.Add(request.data_length);
      } else {
        MarkWritableDirty(memory, chain, request.data_length);
        metrics_.read_bytes.Add(request.data_length);
        *written = static_cast<uint32_t>(request.data_length);
      }
      return kBlkSOk;
    }
    case kBlkTFlush:
      if (RetryOnEintr([&] { return ::fdatasync(file_.get()); }) < 0) {
        LOG_EVERY_N(WARNING, 100) << name() << ": fdatasync: " << std::strerror(errno);
        return kBlkSIoErr;
      }
      return kBlkSOk;
    case kBlkTGetId: {
      uint8_t id[kBlkIdBytes] = {};
      std::memcpy(id, drive_id_.data(), std::min<size_t>(drive_id_.size(), kBlkIdBytes));
      if (!WriteToChain(memory, chain, 0, absl::MakeConstSpan(id)).ok()) return kBlkSIoErr;
      *written = kBlkIdBytes;
      return kBlkSOk;
    }
  }
  return kBlkSUnsupp;
}

void Block::SaveState(VirtioState* state) const { state->device = BlockState{capacity()}; }

absl::Status Block::RestoreState(const VirtioState& state) {
  const BlockState saved = DeviceStateOr<BlockState>(state);
  if (saved.capacity != capacity()) {
    return absl::InvalidArgumentError(absl::StrCat(name(), ": the drive has ", capacity(),
                                                   " sectors; the snapshot's had ", saved.capacity,
                                                   " (a restored drive must keep its size)"));
  }
  return absl::OkStatus();
}

// Requests are taken off the ring in batches. Reads (or writes) of
// adjacent sectors are merged into one preadv (pwritev), as a host block
// layer would merge them: a driver that queues many small sequential
// requests costs one system call per run rather than per request. Flushes
// and GET_ID are executed in order, after everything before them.
void Block::Process() {
  if (!active_.has_value()) return;
  Queue& queue = *active_->queues[0];
  bool used_any = false;
  const uint64_t capacity = this->capacity();
  std::vector<PendingIo> batch;
  // Counts the request by its status and returns it to the driver.
  auto complete = [&](const DescriptorChain& chain, uint8_t status, uint32_t written) {
    if (status == kBlkSOk) {
      metrics_.requests.Add();
    } else {
      metrics_.errors.Add();
    }
    // The status byte is the last writable byte. Cannot fail: the parser
    // made sure there is one, and Pop that every buffer lies in RAM.
    (void)WriteToChain(active_->memory, chain, chain.writable_bytes - 1,
                       absl::MakeConstSpan(&status, 1));
    queue.AddUsed(chain.head, written + 1);
    used_any = true;
  };
  auto flush = [&] {
    ExecuteBatch(&batch);
    for (PendingIo& io : batch) complete(io.chain, io.status, io.written);
    batch.clear();
  };
  // No kicks while we are at it: each one is a VM exit.
  queue.SetNotifications(false);
  while (true) {
    std::optional<DescriptorChain> popped = NextChain(&*active_, 0, &metrics_, &used_any);
    if (!popped.has_value()) {
      if (!batch.empty()) {
        // The ring is empty for now: serve what was taken, then give the
        // driver, which refills as it sees completions, a moment to queue
        // more before going back to sleep.
        flush();
        if (used_any) SignalUsed(&*active_, &queue, &metrics_);
        used_any = false;
        if (PollForMore(queue)) continue;
      }
      queue.SetNotifications(true);
      if (queue.HasAvailable() && !queue.broken()) {
        queue.SetNotifications(false);
        continue;
      }
      break;
    }
    BlockParseError parse_error;
    absl::StatusOr<BlockRequest> request =
        ParseBlockRequest(*active_->memory, *popped, capacity, read_only_, &parse_error);
    if (!request.ok()) {
      if (!parse_error.status_writable) {
        metrics_.errors.Add();
        metrics_.invalid_chains.Add();
        queue.AddUsed(popped->head, 0);
        used_any = true;
        continue;
      }
      complete(*popped, parse_error.status, 0);
      continue;
    }
    const bool data = request->type == kBlkTIn || request->type == kBlkTOut;
    if (!limiter_->ConsumeRequest(data ? request->data_length : 0)) {
      queue.Undo();
      metrics_.throttled.Add();
      queue.SetNotifications(true);  // the limiter's timer brings us back
      break;
    }
    if (!data) {
      flush();  // a flush covers the writes before it
      uint32_t written = 0;
      uint8_t status = Execute(*popped, *request, &written);
      complete(*popped, status, written);
      continue;
    }
    batch.push_back(PendingIo{std::move(*popped), *request});
    if (batch.size() >= kMaxBatch) flush();
  }
  flush();
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

bool Block::PollForMore(const Queue& queue) const {
  const absl::Time deadline = absl::Now() + kPollWindow;
  while (absl::Now() < deadline) {
    if (queue.HasAvailable()) return true;
  }
  return queue.HasAvailable();
}

void Block::ExecuteBatch(std::vector<PendingIo>* batch) {
  memory::GuestMemory* memory = active_->memory;
  size_t i = 0;
  while (i < batch->size()) {
    // The run of requests [i, j) that one transfer can serve: same
    // direction, each starting where the previous ended.
    const bool write = (*batch)[i].request.type == kBlkTOut;
    std::vector<iovec> iovecs;
    size_t j = i;
    uint64_t next_offset = (*batch)[i].request.sector * kSectorSize;
    bool mapped = true;
    while (j < batch->size()) {
      PendingIo& io = (*batch)[j];
      if ((io.request.type == kBlkTOut) != write ||
          io.request.sector * kSectorSize != next_offset) {
        break;
      }
      absl::StatusOr<std::vector<iovec>> parts =
          write ? ReadableIovecs(*memory, io.chain, 16, io.request.data_length)
                : WritableIovecs(*memory, io.chain, 0, io.request.data_length);
      if (!parts.ok()) {
        if (j == i) {
          mapped = false;
          ++j;
        }
        break;
      }
      if (j > i && iovecs.size() + parts->size() > IOV_MAX) break;
      iovecs.insert(iovecs.end(), parts->begin(), parts->end());
      next_offset += io.request.data_length;
      ++j;
    }
    absl::Status status = mapped
                              ? Transfer(file_.get(), std::move(iovecs),
                                         (*batch)[i].request.sector * kSectorSize, write)
                              : absl::InvalidArgumentError("a data buffer is outside guest memory");
    if (!status.ok() && j - i > 1) {
      // One of the merged requests failed: redo them one by one, so each
      // gets its own status.
      for (size_t k = i; k < j; ++k) {
        PendingIo& io = (*batch)[k];
        io.status = Execute(io.chain, io.request, &io.written);
      }
      i = j;
      continue;
    }
    for (size_t k = i; k < j; ++k) {
      PendingIo& io = (*batch)[k];
      if (!status.ok()) {
        LOG_EVERY_N(WARNING, 100) << name() << ": " << status.message();
        io.status = kBlkSIoErr;
        continue;
      }
      io.status = kBlkSOk;
      if (write) {
        metrics_.write_bytes.Add(io.request.data_length);
      } else {
        MarkWritableDirty(memory, io.chain, io.request.data_length);
        metrics_.read_bytes.Add(io.request.data_length);
        io.written = static_cast<uint32_t>(io.request.data_length);
      }
    }
    i = j;
  }
}

}  // namespace hearth::virtio
