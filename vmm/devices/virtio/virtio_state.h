// A virtio device's snapshot state as plain values: what the transport and
// the device save, and what they are restored from. The devices and the
// transport know only these structs; the persist.cc files beside them
// convert to and from the snapshot format (hearth.vmm.v1.VirtioState), so
// nothing else under vmm/devices depends on it.
//
// The device-specific structs live here rather than beside each device
// because the transport carries whichever one its device saved (as the
// snapshot format's VirtioState carries a oneof of them).
//
// Fields keep the widths the snapshot format stores (a queue size is a
// uint32_t here, not a uint16_t): a snapshot file is input, and the device
// or transport checks each value before it uses it.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_VIRTIO_STATE_H_
#define HEARTH_VMM_DEVICES_VIRTIO_VIRTIO_STATE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <variant>
#include <vector>

namespace hearth::virtio {

// One queue as the driver configured it and, once the device runs, where
// the device is in its rings.
struct QueueState {
  uint32_t size = 0;
  bool ready = false;
  uint64_t desc_table = 0;
  uint64_t avail_ring = 0;
  uint64_t used_ring = 0;
  uint32_t next_avail = 0;
  uint32_t next_used = 0;
  bool broken = false;

  bool operator==(const QueueState& other) const {
    return size == other.size && ready == other.ready && desc_table == other.desc_table &&
           avail_ring == other.avail_ring && used_ring == other.used_ring &&
           next_avail == other.next_avail && next_used == other.next_used && broken == other.broken;
  }
};

// virtio-blk: the disk's size in 512-byte sectors, as the guest knows it.
struct BlockState {
  uint64_t capacity = 0;

  bool operator==(const BlockState& other) const { return capacity == other.capacity; }
};

// virtio-net: a received frame already written into an rx chain whose
// publication the rate limiter held back.
struct NetState {
  struct PendingRx {
    uint32_t head = 0;
    uint32_t length = 0;
  };
  std::optional<PendingRx> pending_rx;

  bool operator==(const NetState& other) const {
    if (pending_rx.has_value() != other.pending_rx.has_value()) return false;
    return !pending_rx.has_value() || (pending_rx->head == other.pending_rx->head &&
                                       pending_rx->length == other.pending_rx->length);
  }
};

// virtio-balloon: the target and actual sizes, the statistics last
// reported and the statistics buffer held until the next poll.
struct BalloonState {
  uint32_t num_pages = 0;
  uint32_t actual = 0;
  uint32_t stats_polling_interval_s = 0;
  std::optional<uint32_t> stats_head;
  std::map<uint16_t, uint64_t> stats;

  bool operator==(const BalloonState& other) const {
    return num_pages == other.num_pages && actual == other.actual &&
           stats_polling_interval_s == other.stats_polling_interval_s &&
           stats_head == other.stats_head && stats == other.stats;
  }
};

// The device's own state beyond its queues; std::monostate for devices
// that have none (rng, vsock).
using DeviceState = std::variant<std::monostate, BlockState, NetState, BalloonState>;

// The transport's registers and queues, and the device's own state.
struct VirtioState {
  // virtio device id (virtio 1.2 §5).
  uint32_t device_type = 0;
  uint32_t status = 0;
  uint64_t driver_features = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint32_t queue_sel = 0;
  uint32_t interrupt_status = 0;
  std::vector<QueueState> queues;
  // The transport had activated the device: it was running.
  bool activated = false;
  DeviceState device;

  bool operator==(const VirtioState& other) const {
    return device_type == other.device_type && status == other.status &&
           driver_features == other.driver_features &&
           device_features_sel == other.device_features_sel &&
           driver_features_sel == other.driver_features_sel && queue_sel == other.queue_sel &&
           interrupt_status == other.interrupt_status && queues == other.queues &&
           activated == other.activated && device == other.device;
  }
};

// The device-specific state `state` carries if it is a T, else T's
// defaults (as the snapshot format reads a oneof member that is not set).
template <typename T>
T DeviceStateOr(const VirtioState& state) {
  if (const T* saved = std::get_if<T>(&state.device)) return *saved;
  return T{};
}

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_VIRTIO_STATE_H_
