#include "vmm/devices/virtio/mmio_transport.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace hearth::virtio {

MmioTransport::MmioTransport(std::shared_ptr<VirtioDevice> device, memory::GuestMemory* memory,
                             EventLoop* event_loop,
                             std::unique_ptr<devices::Interrupt> interrupt_line)
    : device_(std::move(device)),
      memory_(memory),
      event_loop_(event_loop),
      interrupt_(std::move(interrupt_line)),
      queue_count_(device_->queue_max_sizes().size()) {
  absl::MutexLock lock(&mutex_);
  for (uint16_t max : device_->queue_max_sizes()) {
    queues_.push_back(QueueConfig{max});
  }
}

uint32_t MmioTransport::status() const {
  absl::MutexLock lock(&mutex_);
  return status_;
}

void MmioTransport::Read(uint64_t offset, absl::Span<uint8_t> data) {
  if (offset >= kMmioConfig) {
    device_->ReadConfig(offset - kMmioConfig, data);
    return;
  }
  std::fill(data.begin(), data.end(), 0);
  if (data.size() != 4 || offset % 4 != 0) {
    metrics_.bad_register_accesses++;
    return;
  }
  absl::MutexLock lock(&mutex_);
  uint32_t value = ReadRegister(offset);
  std::memcpy(data.data(), &value, 4);
}

void MmioTransport::Write(uint64_t offset, absl::Span<const uint8_t> data) {
  if (offset >= kMmioConfig) {
    device_->WriteConfig(offset - kMmioConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    metrics_.bad_register_accesses++;
    return;
  }
  uint32_t value;
  std::memcpy(&value, data.data(), 4);
  absl::MutexLock lock(&mutex_);
  WriteRegister(offset, value);
}

QueueConfig* MmioTransport::SelectedQueue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

bool MmioTransport::QueuesWritable() const {
  return (status_ & kStatusFeaturesOk) && !(status_ & kStatusDriverOk);
}

uint32_t MmioTransport::ReadRegister(uint64_t offset) {
  switch (offset) {
    case kMmioMagicValue:
      return kMmioMagic;
    case kMmioVersion:
      return 2;
    case kMmioDeviceId:
      return device_->device_type();
    case kMmioVendorId:
      return kVendorId;
    case kMmioDeviceFeatures:
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(device_->features() >> (32 * device_features_sel_));
    case kMmioQueueNumMax: {
      std::vector<uint16_t> max = device_->queue_max_sizes();
      return queue_sel_ < max.size() ? max[queue_sel_] : 0;
    }
    case kMmioQueueReady: {
      QueueConfig* q = SelectedQueue();
      return q != nullptr && q->ready ? 1 : 0;
    }
    case kMmioInterruptStatus:
      return interrupt_.status();
    case kMmioStatus:
      return status_;
    case kMmioConfigGeneration:
      return device_->config_generation();
    default:
      metrics_.bad_register_accesses++;
      return 0;
  }
}

void MmioTransport::WriteRegister(uint64_t offset, uint32_t value) {
  auto set_low = [](uint64_t* field, uint32_t v) { *field = (*field & 0xffffffff00000000ull) | v; };
  auto set_high = [](uint64_t* field, uint32_t v) {
    *field = (*field & 0xffffffffull) | (uint64_t{v} << 32);
  };
  QueueConfig* q = SelectedQueue();
  bool queue_ok = q != nullptr && QueuesWritable() && !q->ready;
  switch (offset) {
    case kMmioDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kMmioDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kMmioDriverFeatures:
      if ((status_ & kStatusDriver) && !(status_ & kStatusFeaturesOk) &&
          driver_features_sel_ <= 1) {
        if (driver_features_sel_ == 0) {
          set_low(&driver_features_, value);
        } else {
          set_high(&driver_features_, value);
        }
        return;
      }
      break;
    case kMmioQueueSel:
      queue_sel_ = value;
      return;
    case kMmioQueueNum:
      if (queue_ok) {
        q->size = static_cast<uint16_t>(std::min<uint32_t>(value, 0xffff));
        return;
      }
      break;
    case kMmioQueueReady:
      if (q != nullptr && QueuesWritable()) {
        q->ready = value == 1;
        return;
      }
      break;
    case kMmioQueueDescLow:
      if (queue_ok) return set_low(&q->desc_table, value);
      break;
    case kMmioQueueDescHigh:
      if (queue_ok) return set_high(&q->desc_table, value);
      break;
    case kMmioQueueDriverLow:
      if (queue_ok) return set_low(&q->avail_ring, value);
      break;
    case kMmioQueueDriverHigh:
      if (queue_ok) return set_high(&q->avail_ring, value);
      break;
    case kMmioQueueDeviceLow:
      if (queue_ok) return set_low(&q->used_ring, value);
      break;
    case kMmioQueueDeviceHigh:
      if (queue_ok) return set_high(&q->used_ring, value);
      break;
    case kMmioQueueNotify:
      // Normally caught by the queue's ioeventfd before it gets here.
      event_loop_->Post([this, value] { Notify(value); });
      return;
    case kMmioInterruptAck:
      interrupt_.Acknowledge(value);
      return;
    case kMmioStatus:
      WriteStatus(value);
      return;
    default:
      break;
  }
  metrics_.bad_register_accesses++;
}

void MmioTransport::WriteStatus(uint32_t value) {
  if (value == 0) {
    ResetLocked();
    return;
  }
  // §2.1.2: the driver MUST NOT clear a status bit (only reset clears).
  // Allowing it would let a driver go back from DRIVER_OK to FEATURES_OK,
  // rewrite the queues and activate the running device a second time.
  // NEEDS_RESET is the device's bit; the driver need not echo it.
  if ((status_ & ~value & ~kStatusNeedsReset) != 0) {
    metrics_.bad_register_accesses++;
    return;
  }
  uint32_t added = value & ~status_;
  if (added & kStatusFeaturesOk) {
    uint64_t offered = device_->features();
    if (!(status_ & kStatusDriver) || (driver_features_ & ~offered) != 0 ||
        !(driver_features_ & kFeatureVersion1)) {
      // Leaving FEATURES_OK clear tells the driver its features were refused.
      metrics_.rejected_features++;
      value &= ~kStatusFeaturesOk;
    }
  }
  if ((added & kStatusDriverOk) && !(value & kStatusFeaturesOk)) {
    metrics_.bad_register_accesses++;
    value &= ~kStatusDriverOk;
  }
  status_ = value | (status_ & kStatusNeedsReset);
  if (!(added & kStatusDriverOk) || !(status_ & kStatusDriverOk)) return;

  absl::StatusOr<ActivateContext> context = MakeContextLocked();
  if (!context.ok()) {
    LOG(WARNING) << device_->name() << ": " << context.status().message() << "; device needs reset";
    metrics_.activation_failures++;
    status_ |= kStatusNeedsReset;
    interrupt_.SignalConfigChange();
    return;
  }
  // The device runs on the event-loop thread; hand it over there.
  auto shared_context = std::make_shared<ActivateContext>(std::move(*context));
  uint64_t epoch = epoch_;
  event_loop_->Post([this, shared_context, epoch] {
    {
      absl::MutexLock lock(&mutex_);
      if (epoch != epoch_) return;  // reset since
    }
    absl::Status status = device_->Activate(std::move(*shared_context));
    if (!status.ok()) {
      LOG(WARNING) << device_->name() << ": activation failed: " << status.message();
      metrics_.activation_failures++;
      absl::MutexLock lock(&mutex_);
      status_ |= kStatusNeedsReset;
      interrupt_.SignalConfigChange();
      return;
    }
    active_ = true;
  });
}

absl::StatusOr<ActivateContext> MmioTransport::MakeContextLocked() {
  ActivateContext context;
  context.memory = memory_;
  context.interrupt = &interrupt_;
  context.event_loop = event_loop_;
  context.acked_features = driver_features_;
  context.needs_reset = [this] {
    absl::MutexLock lock(&mutex_);
    status_ |= kStatusNeedsReset;
    interrupt_.SignalConfigChange();
  };
  bool event_idx = driver_features_ & kFeatureEventIdx;
  bool indirect = driver_features_ & kFeatureIndirectDesc;
  for (size_t i = 0; i < queues_.size(); ++i) {
    if (!queues_[i].ready) {
      context.queues.emplace_back();
      continue;
    }
    absl::StatusOr<Queue> queue = Queue::Create(queues_[i], memory_, event_idx, indirect);
    if (!queue.ok()) {
      return absl::Status(queue.status().code(),
                          absl::StrCat("queue ", i, ": ", queue.status().message()));
    }
    context.queues.push_back(std::move(*queue));
  }
  return context;
}

absl::StatusOr<VirtioState> MmioTransport::SaveState() const {
  VirtioState state;
  state.device_type = device_->device_type();
  {
    absl::MutexLock lock(&mutex_);
    state.status = status_;
    state.driver_features = driver_features_;
    state.device_features_sel = device_features_sel_;
    state.driver_features_sel = driver_features_sel_;
    state.queue_sel = queue_sel_;
    state.interrupt_status = interrupt_.status();
    state.activated = active_;
    for (const QueueConfig& q : queues_) {
      QueueState& saved = state.queues.emplace_back();
      saved.size = q.size;
      saved.ready = q.ready;
      saved.desc_table = q.desc_table;
      saved.avail_ring = q.avail_ring;
      saved.used_ring = q.used_ring;
    }
  }
  if (active_) {
    const ActivateContext* context = device_->activated();
    if (context == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(device_->name(), ": this device cannot be snapshotted"));
    }
    for (size_t i = 0; i < context->queues.size() && i < queue_count_; ++i) {
      if (!context->queues[i].has_value()) continue;
      const Queue& queue = *context->queues[i];
      QueueState& saved = state.queues[i];
      saved.next_avail = queue.next_avail();
      saved.next_used = queue.next_used();
      saved.broken = queue.broken();
    }
  }
  device_->SaveState(&state);
  return state;
}

absl::Status MmioTransport::RestoreState(const VirtioState& state) {
  const std::string name = device_->name();
  if (state.device_type != device_->device_type()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the snapshot has a device of type ", state.device_type, " here"));
  }
  if (state.queues.size() != queue_count_) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the snapshot has ", state.queues.size(),
                                                   " queues, the device ", queue_count_));
  }
  if ((state.driver_features & ~device_->features()) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the snapshot's driver features are not all offered here"));
  }
  std::optional<ActivateContext> context;
  {
    absl::MutexLock lock(&mutex_);
    status_ = state.status;
    driver_features_ = state.driver_features;
    device_features_sel_ = state.device_features_sel;
    driver_features_sel_ = state.driver_features_sel;
    queue_sel_ = state.queue_sel;
    for (size_t i = 0; i < queue_count_; ++i) {
      const QueueState& q = state.queues[i];
      if (q.size > 0xffff) return absl::InvalidArgumentError(absl::StrCat(name, ": queue size"));
      queues_[i] = QueueConfig{static_cast<uint16_t>(q.size), q.ready, q.desc_table, q.avail_ring,
                               q.used_ring};
    }
    // NEEDS_RESET alone means the activation failed: the driver must reset.
    // A device that was running when it set NEEDS_RESET (a queue the driver
    // broke) kept serving its other queues, and goes on doing so.
    if ((status_ & kStatusDriverOk) && (state.activated || !(status_ & kStatusNeedsReset))) {
      ASSIGN_OR_RETURN(ActivateContext made, MakeContextLocked());
      context = std::move(made);
      for (size_t i = 0; i < queue_count_; ++i) {
        if (!context->queues[i].has_value()) continue;
        const QueueState& q = state.queues[i];
        if (q.next_avail > 0xffff || q.next_used > 0xffff) {
          return absl::InvalidArgumentError(absl::StrCat(name, ": queue position"));
        }
        context->queues[i]->SetIndices(static_cast<uint16_t>(q.next_avail),
                                       static_cast<uint16_t>(q.next_used));
        if (q.broken) context->queues[i]->MarkBroken();
      }
    }
  }
  RETURN_IF_ERROR(device_->RestoreState(state));
  // Before the activation, which may complete requests the driver made
  // available before the save (and vsock's Restored posts an event): those
  // interrupts must add to the saved status, not be overwritten by it.
  interrupt_.Restore(state.interrupt_status);
  if (context.has_value()) {
    absl::Status activated = device_->Activate(std::move(*context));
    if (!activated.ok()) {
      return absl::Status(activated.code(),
                          absl::StrCat(name, ": re-activation failed: ", activated.message()));
    }
    active_ = true;
    device_->Restored();
  }
  return absl::OkStatus();
}

void MmioTransport::ResetLocked() {
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  queue_sel_ = 0;
  std::vector<uint16_t> max = device_->queue_max_sizes();
  for (size_t i = 0; i < queues_.size(); ++i) queues_[i] = QueueConfig{max[i]};
  interrupt_.Clear();
  ++epoch_;
  event_loop_->Post([this] {
    if (active_) device_->Reset();
    active_ = false;
  });
}

void MmioTransport::Notify(uint32_t index) {
  if (!active_ || index >= queue_count_) {
    metrics_.notifications_before_ready++;
    return;
  }
  device_->ProcessQueue(index);
}

}  // namespace hearth::virtio
