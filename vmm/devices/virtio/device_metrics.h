// Counters every virtio device keeps, read by the metrics flush (agent
// metrics, FlushMetrics, the standalone metrics file). Written on the
// event-loop thread, read from anywhere: relaxed atomics.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_DEVICE_METRICS_H_
#define HEARTH_VMM_DEVICES_VIRTIO_DEVICE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hearth::virtio {

struct Counter {
  std::atomic<uint64_t> value{0};
  void Add(uint64_t n = 1) { value.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Get() const { return value.load(std::memory_order_relaxed); }
};

struct DeviceMetrics {
  virtual ~DeviceMetrics() = default;

  Counter activations;
  Counter notifications;   // queue kicks handled
  Counter requests;        // chains completed successfully
  Counter read_bytes;      // moved from the backend into the guest
  Counter write_bytes;     // moved from the guest to the backend
  Counter errors;          // requests failed (bad request or backend error)
  Counter invalid_chains;  // malformed descriptor chains (guest bugs/attacks)
  Counter broken_queues;   // rings disabled until reset (avail index jumps)
  Counter throttled;       // times the rate limiter made the device wait
  Counter interrupts;      // used-buffer interrupts raised

  // (name, value) pairs in a stable order, for JSON output. A device with
  // counters of its own appends them after these.
  virtual std::vector<std::pair<std::string, uint64_t>> Snapshot() const {
    return {{"activations", activations.Get()},
            {"notifications", notifications.Get()},
            {"requests", requests.Get()},
            {"read_bytes", read_bytes.Get()},
            {"write_bytes", write_bytes.Get()},
            {"errors", errors.Get()},
            {"invalid_chains", invalid_chains.Get()},
            {"broken_queues", broken_queues.Get()},
            {"throttled", throttled.Get()},
            {"interrupts", interrupts.Get()}};
  }
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_DEVICE_METRICS_H_
