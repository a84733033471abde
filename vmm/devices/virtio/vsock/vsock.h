// virtio-vsock (virtio 1.2 §5.10) with Firecracker's host-side convention:
//  * host-initiated: a host process connects to the unix socket at uds_path
//    and writes "CONNECT <port>\n"; the device asks the guest (REQUEST to
//    <port>) and, once the guest accepts, answers "OK <host_port>\n" and
//    relays bytes;
//  * guest-initiated: the guest connects to CID 2 port P; the device asks a
//    VsockConnector for a unix socket connected to "<uds_path>_P" (the VMM
//    itself in standalone mode, the agent for a jailed VMM) and relays.
// Stream sockets only. Credit-based flow control both ways: the device
// advertises kBufAlloc bytes per connection and never buffers more than that
// for the host side; it never sends the guest more than the guest's credit.
// The rx queue carries control packets first, then data; without rx buffers
// the device stops reading host sockets until the guest refills.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_VSOCK_VSOCK_H_
#define HEARTH_VMM_DEVICES_VIRTIO_VSOCK_VSOCK_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "vmm/devices/virtio/device_metrics.h"
#include "vmm/devices/virtio/virtio_device.h"
#include "vmm/devices/virtio/vsock/packet.h"

namespace hearth::virtio {

// Opens host-side connections for guest-initiated streams. `done` may run
// before Connect returns or later on the event-loop thread.
class VsockConnector {
 public:
  virtual ~VsockConnector() = default;
  virtual void Connect(uint32_t port, std::function<void(absl::StatusOr<UniqueFd>)> done) = 0;
};

// Connects to "<uds_path>_<port>" directly (standalone mode, no jail).
class PathVsockConnector : public VsockConnector {
 public:
  explicit PathVsockConnector(std::string uds_path) : uds_path_(std::move(uds_path)) {}
  void Connect(uint32_t port, std::function<void(absl::StatusOr<UniqueFd>)> done) override;

 private:
  std::string uds_path_;
};

struct VsockMetrics : DeviceMetrics {
  Counter connections_opened;
  Counter connections_refused;
  Counter rx_packets;
  Counter tx_packets;
  Counter rst_sent;
  Counter dropped_packets;  // malformed or for no connection

  std::vector<std::pair<std::string, uint64_t>> Snapshot() const override {
    auto counters = DeviceMetrics::Snapshot();
    counters.insert(counters.end(), {{"connections_opened", connections_opened.Get()},
                                     {"connections_refused", connections_refused.Get()},
                                     {"rx_packets", rx_packets.Get()},
                                     {"tx_packets", tx_packets.Get()},
                                     {"rst_sent", rst_sent.Get()},
                                     {"dropped_packets", dropped_packets.Get()}});
    return counters;
  }
};

class Vsock : public VirtioDevice {
 public:
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;
  static constexpr size_t kEventQueue = 2;
  // Bytes of guest data the device will hold for a slow host peer.
  static constexpr uint32_t kBufAlloc = 256 * 1024;
  static constexpr size_t kMaxConnections = 1024;
  static constexpr size_t kMaxPendingControl = 4096;

  Vsock(uint64_t guest_cid, UniqueFd listener, std::unique_ptr<VsockConnector> connector);
  ~Vsock() override;

  uint32_t device_type() const override { return kDeviceVsock; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override {
    return {kMaxQueueSize, kMaxQueueSize, kMaxQueueSize};
  }
  std::string name() const override { return "vsock"; }
  void ReadConfig(uint64_t offset, absl::Span<uint8_t> data) override;

  absl::Status Activate(ActivateContext context) override;
  void ProcessQueue(size_t index) override;
  void Reset() override;
  const ActivateContext* activated() const override { return active_ ? &*active_ : nullptr; }
  // Connections do not survive a snapshot (their host sockets belong to
  // the old process): the guest is told its transport was reset.
  void Restored() override;

  const VsockMetrics& metrics() const { return metrics_; }
  size_t connection_count() const { return connections_.size(); }

 private:
  // (host-side port, guest port)
  using Key = std::pair<uint32_t, uint32_t>;
  struct Connection {
    enum class State { kConnectingToGuest, kConnectingToHost, kEstablished, kClosing };
    State state;
    UniqueFd socket;
    uint32_t peer_buf_alloc = 0;
    uint32_t peer_fwd_cnt = 0;
    uint32_t tx_cnt = 0;             // payload bytes sent to the guest
    uint32_t fwd_cnt = 0;            // guest payload bytes written to the socket
    uint32_t last_fwd_cnt_sent = 0;  // fwd_cnt the guest last heard of
    std::string to_host;             // guest data the socket has not taken yet
    bool readable = false;           // socket has data for the guest
    bool credit_requested = false;
    bool host_eof = false;
    // The guest shut down its sending side (SHUTDOWN with SEND): the host
    // socket is shut for writing once to_host is flushed; with both sides
    // shut down the connection then ends with RST.
    bool guest_sent_all = false;
    bool guest_done = false;
    uint32_t watched_events = 0;
  };
  // A connection accepted on the listener, before its "CONNECT <port>\n".
  struct Handshake {
    UniqueFd socket;
    std::string line;
  };

  void AcceptHostConnections();
  void ReadHandshake(int fd);
  void ProcessTx();
  void HandlePacket(const VsockPacket& packet, const DescriptorChain& chain);
  void ProcessRx();
  // Fills one rx chain with data from `connection`; the payload length, or
  // nothing if no data moved (no data, no credit, or the host closed).
  std::optional<uint32_t> SendData(const Key& key, Connection* connection,
                                   const DescriptorChain& chain);
  void WriteToHost(const Key& key, Connection* connection);
  void OnSocketEvent(Key key, uint32_t events);
  void UpdateInterest(const Key& key, Connection* connection);
  void QueueControl(const Key& key, uint16_t op, uint32_t flags = 0);
  void Close(const Key& key, bool send_rst);
  VsockHeader MakeHeader(const Key& key, uint16_t op, uint32_t len, uint32_t flags,
                         const Connection* connection) const;
  uint32_t AllocateHostPort();

  const uint64_t guest_cid_;
  UniqueFd listener_;
  std::unique_ptr<VsockConnector> connector_;
  VsockMetrics metrics_;
  std::optional<ActivateContext> active_;
  std::map<Key, Connection> connections_;
  std::map<int, Handshake> handshakes_;
  std::map<int, Key> socket_keys_;
  std::deque<std::pair<Key, VsockHeader>> control_;  // waiting for rx buffers
  uint32_t next_host_port_ = 1u << 30;
  // Bumped on Reset so that a late connector callback finds nothing.
  uint64_t epoch_ = 0;
};

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_VSOCK_VSOCK_H_
