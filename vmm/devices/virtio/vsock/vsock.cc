#include "vmm/devices/virtio/vsock/vsock.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"
#include "glog/logging.h"
#include "vmm/devices/virtio/chain_io.h"

namespace hearth::virtio {
namespace {

constexpr size_t kMaxHandshakeLine = 32;  // "CONNECT 4294967295\n" fits

std::optional<uint32_t> ParseConnectLine(absl::string_view line) {
  constexpr absl::string_view kPrefix = "CONNECT ";
  if (line.size() < kPrefix.size() + 2 || line.substr(0, kPrefix.size()) != kPrefix ||
      line.back() != '\n') {
    return std::nullopt;
  }
  absl::string_view digits = line.substr(kPrefix.size(), line.size() - kPrefix.size() - 1);
  uint32_t port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  if (!absl::SimpleAtoi(digits, &port)) return std::nullopt;
  return port;
}

}  // namespace

void PathVsockConnector::Connect(uint32_t port,
                                 std::function<void(absl::StatusOr<UniqueFd>)> done) {
  std::string path = absl::StrCat(uds_path_, "_", port);
  absl::StatusOr<sockaddr_un> address = UnixSocketAddress(path, "vsock");
  if (!address.ok()) {
    done(address.status());
    return;
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    done(ErrnoStatus("vsock: socket"));
    return;
  }
  if (RetryOnEintr([&] {
        return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&*address), sizeof(*address));
      }) < 0) {
    done(ErrnoStatus(absl::StrCat("vsock: connect ", path)));
    return;
  }
  done(std::move(fd));
}

Vsock::Vsock(uint64_t guest_cid, UniqueFd listener, std::unique_ptr<VsockConnector> connector)
    : guest_cid_(guest_cid), listener_(std::move(listener)), connector_(std::move(connector)) {}

Vsock::~Vsock() { Reset(); }

uint64_t Vsock::features() const {
  return kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx;
}

void Vsock::ReadConfig(uint64_t offset, absl::Span<uint8_t> data) {
  // struct virtio_vsock_config: guest_cid u64 @0.
  uint8_t config[8];
  std::memcpy(config, &guest_cid_, 8);
  ReadConfigBytes(config, offset, data);
}

absl::Status Vsock::Activate(ActivateContext context) {
  if (context.queues.size() < 2 || !context.queues[kRxQueue].has_value() ||
      !context.queues[kTxQueue].has_value()) {
    return absl::FailedPreconditionError("vsock: rx and tx queues must be set up");
  }
  active_ = std::move(context);
  metrics_.activations.Add();
  if (listener_.valid()) {
    absl::Status status =
        active_->event_loop->Add(listener_.get(), [this](uint32_t) { AcceptHostConnections(); });
    if (!status.ok()) return status;
  }
  ProcessTx();
  ProcessRx();
  return absl::OkStatus();
}

void Vsock::Restored() {
  // virtio 1.2 5.10.6.6: VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (id 0) on the
  // event queue; the driver then drops every connection it had.
  if (!active_.has_value() || active_->queues.size() <= kEventQueue ||
      !active_->queues[kEventQueue].has_value()) {
    return;
  }
  Queue& queue = *active_->queues[kEventQueue];
  bool used_any = false;
  std::optional<DescriptorChain> chain = NextChain(&*active_, kEventQueue, &metrics_, &used_any);
  if (chain.has_value()) {
    const uint32_t event_id = 0;
    uint32_t written = WriteToChain(active_->memory, *chain, 0,
                                    absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&event_id),
                                                        sizeof(event_id)))
                               .ok()
                           ? sizeof(event_id)
                           : 0;
    queue.AddUsed(chain->head, written);
    used_any = true;
  } else {
    LOG(WARNING) << "vsock: no event buffer for the transport reset after a restore";
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

void Vsock::Reset() {
  if (!active_.has_value()) return;
  EventLoop* loop = active_->event_loop;
  if (listener_.valid()) loop->Unwatch(listener_.get());
  for (auto& [fd, handshake] : handshakes_) loop->Unwatch(fd);
  for (auto& [key, connection] : connections_) {
    if (connection.socket.valid()) loop->Unwatch(connection.socket.get());
  }
  handshakes_.clear();
  connections_.clear();
  socket_keys_.clear();
  control_.clear();
  ++epoch_;
  active_.reset();
}

void Vsock::ProcessQueue(size_t index) {
  metrics_.notifications.Add();
  if (index == kTxQueue) ProcessTx();
  // Anything may have freed rx buffers or credit: try to deliver.
  ProcessRx();
}

void Vsock::AcceptHostConnections() {
  while (true) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a transient error: wait for the next event
    UniqueFd socket(fd);
    if (handshakes_.size() + connections_.size() >= kMaxConnections) {
      metrics_.connections_refused.Add();
      continue;  // closed by UniqueFd
    }
    if (!active_->event_loop->Add(fd, [this, fd](uint32_t) { ReadHandshake(fd); }).ok()) {
      continue;
    }
    handshakes_[fd] = Handshake{std::move(socket), {}};
  }
}

void Vsock::ReadHandshake(int fd) {
  auto it = handshakes_.find(fd);
  if (it == handshakes_.end()) return;
  Handshake& handshake = it->second;
  // One byte at a time up to the newline, so that no payload the host sends
  // after its CONNECT line is consumed here.
  while (handshake.line.empty() || handshake.line.back() != '\n') {
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0 || handshake.line.size() >= kMaxHandshakeLine) {
      metrics_.connections_refused.Add();  // hung up, or no line in sight
      active_->event_loop->Unwatch(fd);
      handshakes_.erase(it);
      return;
    }
    handshake.line.push_back(c);
  }
  std::optional<uint32_t> port = ParseConnectLine(handshake.line);
  UniqueFd socket = std::move(handshake.socket);
  active_->event_loop->Unwatch(fd);
  handshakes_.erase(it);
  if (!port.has_value()) {
    metrics_.connections_refused.Add();
    return;
  }
  Key key{AllocateHostPort(), *port};
  if (!active_->event_loop
           ->Add(
               fd, [this, key](uint32_t events) { OnSocketEvent(key, events); }, 0)
           .ok()) {
    return;
  }
  Connection& connection = connections_[key];
  connection.state = Connection::State::kConnectingToGuest;
  connection.socket = std::move(socket);
  socket_keys_[fd] = key;
  QueueControl(key, kVsockOpRequest);
  ProcessRx();
}

uint32_t Vsock::AllocateHostPort() {
  while (true) {
    uint32_t port = next_host_port_++;
    if (next_host_port_ == 0) next_host_port_ = 1u << 30;
    auto it = connections_.lower_bound(Key{port, 0});
    if (it == connections_.end() || it->first.first != port) return port;
  }
}

VsockHeader Vsock::MakeHeader(const Key& key, uint16_t op, uint32_t len, uint32_t flags,
                              const Connection* connection) const {
  VsockHeader h = {};
  h.src_cid = kVsockHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = key.first;
  h.dst_port = key.second;
  h.len = len;
  h.type = kVsockTypeStream;
  h.op = op;
  h.flags = flags;
  h.buf_alloc = kBufAlloc;
  h.fwd_cnt = connection != nullptr ? connection->fwd_cnt : 0;
  return h;
}

void Vsock::QueueControl(const Key& key, uint16_t op, uint32_t flags) {
  if (control_.size() >= kMaxPendingControl) {
    metrics_.dropped_packets.Add();
    return;
  }
  auto it = connections_.find(key);
  Connection* connection = it == connections_.end() ? nullptr : &it->second;
  if (connection != nullptr) connection->last_fwd_cnt_sent = connection->fwd_cnt;
  if (op == kVsockOpRst) metrics_.rst_sent.Add();
  control_.emplace_back(key, MakeHeader(key, op, 0, flags, connection));
}

void Vsock::Close(const Key& key, bool send_rst) {
  auto it = connections_.find(key);
  if (it != connections_.end()) {
    if (it->second.socket.valid()) {
      int fd = it->second.socket.get();
      active_->event_loop->Unwatch(fd);
      socket_keys_.erase(fd);
    }
    connections_.erase(it);
  }
  if (send_rst) QueueControl(key, kVsockOpRst);
}

void Vsock::UpdateInterest(const Key& key, Connection* connection) {
  if (!connection->socket.valid()) return;
  uint32_t events = 0;
  bool established = connection->state == Connection::State::kEstablished;
  if (established && !connection->readable && !connection->host_eof) events |= EPOLLIN;
  if (!connection->to_host.empty()) events |= EPOLLOUT;
  if (events == connection->watched_events) return;
  if (!active_->event_loop->Modify(connection->socket.get(), events).ok()) {
    Close(key, true);
    return;
  }
  connection->watched_events = events;
}

void Vsock::OnSocketEvent(Key key, uint32_t events) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  Connection& connection = it->second;
  if (events & EPOLLERR) {
    Close(key, true);
    ProcessRx();
    return;
  }
  if (events & EPOLLOUT) {
    WriteToHost(key, &connection);
    it = connections_.find(key);
    if (it == connections_.end()) {
      ProcessRx();
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLHUP)) {
    it->second.readable = true;
    UpdateInterest(key, &it->second);
  }
  ProcessRx();
}

void Vsock::WriteToHost(const Key& key, Connection* connection) {
  while (!connection->to_host.empty()) {
    ssize_t n = ::send(connection->socket.get(), connection->to_host.data(),
                       connection->to_host.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      Close(key, true);
      return;
    }
    connection->to_host.erase(0, static_cast<size_t>(n));
    connection->fwd_cnt += static_cast<uint32_t>(n);
    metrics_.write_bytes.Add(static_cast<uint64_t>(n));
  }
  if (connection->to_host.empty() && connection->guest_done) {
    Close(key, true);
    return;
  }
  if (connection->to_host.empty() && connection->guest_sent_all) {
    ::shutdown(connection->socket.get(), SHUT_WR);
  }
  // Tell the guest about freed buffer space before it runs out of credit.
  if (connection->fwd_cnt - connection->last_fwd_cnt_sent >= kBufAlloc / 4) {
    QueueControl(key, kVsockOpCreditUpdate);
  }
  UpdateInterest(key, connection);
}

void Vsock::ProcessTx() {
  if (!active_.has_value()) return;
  Queue& queue = *active_->queues[kTxQueue];
  bool used_any = false;
  while (std::optional<DescriptorChain> chain =
             NextChain(&*active_, kTxQueue, &metrics_, &used_any)) {
    absl::StatusOr<VsockPacket> packet = ParseVsockPacket(*active_->memory, *chain);
    if (packet.ok()) {
      metrics_.tx_packets.Add();
      HandlePacket(*packet, *chain);
    } else {
      metrics_.invalid_chains.Add();
      LOG_EVERY_N(WARNING, 100) << "vsock: " << packet.status().message();
    }
    queue.AddUsed(chain->head, 0);
    used_any = true;
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

void Vsock::HandlePacket(const VsockPacket& packet, const DescriptorChain& chain) {
  const VsockHeader& h = packet.header;
  if (h.src_cid != guest_cid_ || h.dst_cid != kVsockHostCid) {
    metrics_.dropped_packets.Add();  // not for the host, or spoofed
    return;
  }
  const Key key{h.dst_port, h.src_port};
  if (h.type != kVsockTypeStream) {
    if (h.op != kVsockOpRst) QueueControl(key, kVsockOpRst);
    return;
  }
  auto it = connections_.find(key);
  if (h.op == kVsockOpRequest) {
    if (it != connections_.end() || connections_.size() >= kMaxConnections) {
      metrics_.connections_refused.Add();
      QueueControl(key, kVsockOpRst);
      return;
    }
    Connection& connection = connections_[key];
    connection.state = Connection::State::kConnectingToHost;
    connection.peer_buf_alloc = h.buf_alloc;
    connection.peer_fwd_cnt = h.fwd_cnt;
    const uint64_t epoch = epoch_;
    connector_->Connect(h.dst_port, [this, key, epoch](absl::StatusOr<UniqueFd> fd) {
      if (epoch != epoch_) return;  // the device was reset meanwhile
      auto found = connections_.find(key);
      if (found == connections_.end()) return;
      if (!fd.ok()) {
        LOG_EVERY_N(INFO, 100) << "vsock: guest connection to port " << key.first
                               << " refused: " << fd.status().message();
        metrics_.connections_refused.Add();
        Close(key, true);
        ProcessRx();
        return;
      }
      int raw = fd->get();
      // The socket is served on the event loop: one that cannot be made
      // non-blocking is refused like a failed connection.
      int flags = ::fcntl(raw, F_GETFL);
      if (flags < 0 || ::fcntl(raw, F_SETFL, flags | O_NONBLOCK) < 0 ||
          !active_->event_loop
               ->Add(
                   raw, [this, key](uint32_t e) { OnSocketEvent(key, e); }, 0)
               .ok()) {
        Close(key, true);
        ProcessRx();
        return;
      }
      Connection& connection = found->second;
      connection.socket = std::move(*fd);
      socket_keys_[raw] = key;
      connection.state = Connection::State::kEstablished;
      metrics_.connections_opened.Add();
      QueueControl(key, kVsockOpResponse);
      UpdateInterest(key, &connection);
      ProcessRx();
    });
    return;
  }
  if (it == connections_.end()) {
    metrics_.dropped_packets.Add();
    if (h.op != kVsockOpRst) QueueControl(key, kVsockOpRst);
    return;
  }
  Connection& connection = it->second;
  connection.peer_buf_alloc = h.buf_alloc;
  connection.peer_fwd_cnt = h.fwd_cnt;
  connection.credit_requested = false;
  switch (h.op) {
    case kVsockOpResponse: {
      if (connection.state != Connection::State::kConnectingToGuest) {
        Close(key, true);
        return;
      }
      std::string ok = absl::StrCat("OK ", key.first, "\n");
      if (::send(connection.socket.get(), ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
          static_cast<ssize_t>(ok.size())) {
        Close(key, true);
        return;
      }
      connection.state = Connection::State::kEstablished;
      metrics_.connections_opened.Add();
      UpdateInterest(key, &connection);
      return;
    }
    case kVsockOpRst:
      Close(key, false);
      return;
    case kVsockOpShutdown:
      // What the guest sent before reaches the host first (WriteToHost
      // finishes the shutdown when to_host is empty).
      if (h.flags & kVsockShutdownSend) connection.guest_sent_all = true;
      if (h.flags & kVsockShutdownRcv) connection.host_eof = true;
      if ((h.flags & kVsockShutdownRcv) && (h.flags & kVsockShutdownSend)) {
        connection.guest_done = true;  // both directions done: finish with RST
      }
      WriteToHost(key, &connection);
      return;
    case kVsockOpRw: {
      if (connection.state != Connection::State::kEstablished) {
        Close(key, true);
        return;
      }
      if (connection.to_host.size() + h.len > kBufAlloc) {
        // The guest ignored our credit.
        Close(key, true);
        return;
      }
      size_t old = connection.to_host.size();
      connection.to_host.resize(old + h.len);
      if (!ReadFromChain(
               *active_->memory, chain, sizeof(VsockHeader),
               absl::MakeSpan(reinterpret_cast<uint8_t*>(&connection.to_host[old]), h.len))
               .ok()) {
        Close(key, true);
        return;
      }
      WriteToHost(key, &connection);
      return;
    }
    case kVsockOpCreditUpdate:
      UpdateInterest(key, &connection);
      return;
    case kVsockOpCreditRequest:
      QueueControl(key, kVsockOpCreditUpdate);
      return;
    default:
      Close(key, true);
      return;
  }
}

std::optional<uint32_t> Vsock::SendData(const Key& key, Connection* connection,
                                        const DescriptorChain& chain) {
  uint32_t in_flight = connection->tx_cnt - connection->peer_fwd_cnt;
  uint32_t credit =
      connection->peer_buf_alloc > in_flight ? connection->peer_buf_alloc - in_flight : 0;
  if (credit == 0) {
    if (!connection->credit_requested) {
      connection->credit_requested = true;
      QueueControl(key, kVsockOpCreditRequest);
    }
    return std::nullopt;
  }
  uint64_t room = chain.writable_bytes - sizeof(VsockHeader);
  uint64_t max = std::min<uint64_t>({credit, room, kVsockMaxPayload});
  if (max == 0) return std::nullopt;
  absl::StatusOr<std::vector<iovec>> iovecs =
      WritableIovecs(*active_->memory, chain, sizeof(VsockHeader), max);
  if (!iovecs.ok()) return std::nullopt;
  ssize_t n = RetryOnEintr([&] {
    return ::readv(connection->socket.get(), iovecs->data(), static_cast<int>(iovecs->size()));
  });
  if (n < 0 && errno == EAGAIN) {
    connection->readable = false;
    UpdateInterest(key, connection);
    return std::nullopt;
  }
  if (n <= 0) {
    // The host closed its end (or failed): tell the guest nothing more
    // comes either way; it finishes the connection with RST.
    connection->readable = false;
    connection->host_eof = true;
    QueueControl(key, kVsockOpShutdown, kVsockShutdownRcv | kVsockShutdownSend);
    UpdateInterest(key, connection);
    return std::nullopt;
  }
  VsockHeader header = MakeHeader(key, kVsockOpRw, static_cast<uint32_t>(n), 0, connection);
  connection->last_fwd_cnt_sent = connection->fwd_cnt;
  // Cannot fail: ProcessRx only hands over chains with room for a header,
  // and Pop checked that every buffer lies in RAM.
  (void)WriteToChain(
      active_->memory, chain, 0,
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&header), sizeof(header)));
  MarkWritableDirty(active_->memory, chain, sizeof(header) + static_cast<uint64_t>(n));
  connection->tx_cnt += static_cast<uint32_t>(n);
  metrics_.read_bytes.Add(static_cast<uint64_t>(n));
  return static_cast<uint32_t>(n);
}

void Vsock::ProcessRx() {
  if (!active_.has_value()) return;
  Queue& queue = *active_->queues[kRxQueue];
  bool used_any = false;
  // Connections are served in key order, each until it cannot send more in
  // this pass (no data, no credit); the search resumes at the connection
  // last found, or just after it once it is exhausted. Keys, not iterators:
  // sending may close (erase) a connection.
  std::optional<Key> at;
  bool past_at = false;
  auto next_sender = [&]() -> std::map<Key, Connection>::iterator {
    auto it = !at.has_value() ? connections_.begin()
              : past_at       ? connections_.upper_bound(*at)
                              : connections_.lower_bound(*at);
    for (; it != connections_.end(); ++it) {
      const Connection& c = it->second;
      if (c.state == Connection::State::kEstablished && c.readable && !c.host_eof) {
        at = it->first;
        past_at = false;
        return it;
      }
    }
    return it;
  };
  while (!control_.empty() || next_sender() != connections_.end()) {
    std::optional<DescriptorChain> popped = NextChain(&*active_, kRxQueue, &metrics_, &used_any);
    if (!popped.has_value()) break;  // no rx buffers: resume on kick
    const DescriptorChain& chain = *popped;
    if (chain.writable_bytes < sizeof(VsockHeader)) {
      metrics_.invalid_chains.Add();
      queue.AddUsed(chain.head, 0);
      used_any = true;
      continue;
    }
    if (!control_.empty()) {
      const VsockHeader& header = control_.front().second;
      // Cannot fail: the chain has room for a header (checked above) in RAM.
      (void)WriteToChain(
          active_->memory, chain, 0,
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&header), sizeof(header)));
      control_.pop_front();
      queue.AddUsed(chain.head, sizeof(VsockHeader));
      metrics_.rx_packets.Add();
      used_any = true;
      continue;
    }
    auto sender = next_sender();
    const Key key = sender->first;
    std::optional<uint32_t> sent = SendData(key, &sender->second, chain);
    if (!sent.has_value()) {
      queue.Undo();
      past_at = true;  // `key` is done for this pass
      continue;
    }
    queue.AddUsed(chain.head, sizeof(VsockHeader) + *sent);
    metrics_.rx_packets.Add();
    used_any = true;
  }
  if (used_any) SignalUsed(&*active_, &queue, &metrics_);
}

}  // namespace hearth::virtio
