#include "vmm/devices/virtio/persist.h"

#include <type_traits>
#include <variant>

#include "common/status_macros.h"
#include "vmm/devices/virtio/balloon/persist.h"
#include "vmm/devices/virtio/block/persist.h"
#include "vmm/devices/virtio/net/persist.h"

namespace hearth::virtio {
namespace {

namespace v1 = ::hearth::vmm::v1;

void QueueStateToProto(const QueueState& state, v1::QueueState* proto) {
  proto->set_size(state.size);
  proto->set_ready(state.ready);
  proto->set_desc_table(state.desc_table);
  proto->set_avail_ring(state.avail_ring);
  proto->set_used_ring(state.used_ring);
  proto->set_next_avail(state.next_avail);
  proto->set_next_used(state.next_used);
  proto->set_broken(state.broken);
}

QueueState QueueStateFromProto(const v1::QueueState& proto) {
  QueueState state;
  state.size = proto.size();
  state.ready = proto.ready();
  state.desc_table = proto.desc_table();
  state.avail_ring = proto.avail_ring();
  state.used_ring = proto.used_ring();
  state.next_avail = proto.next_avail();
  state.next_used = proto.next_used();
  state.broken = proto.broken();
  return state;
}

// The device-specific part: the oneof `device`, set exactly when the
// device saved something (even all defaults), unset for monostate.
void DeviceStateToProto(const DeviceState& state, v1::VirtioState* proto) {
  std::visit(
      [proto](const auto& device) {
        using T = std::decay_t<decltype(device)>;
        if constexpr (std::is_same_v<T, BlockState>) {
          BlockStateToProto(device, proto->mutable_block());
        } else if constexpr (std::is_same_v<T, NetState>) {
          NetStateToProto(device, proto->mutable_net());
        } else if constexpr (std::is_same_v<T, BalloonState>) {
          BalloonStateToProto(device, proto->mutable_balloon());
        } else {
          static_assert(std::is_same_v<T, std::monostate>, "a DeviceState with no conversion");
        }
      },
      state);
}

DeviceState DeviceStateFromProto(const v1::VirtioState& proto) {
  switch (proto.device_case()) {
    case v1::VirtioState::kBlock:
      return BlockStateFromProto(proto.block());
    case v1::VirtioState::kNet:
      return NetStateFromProto(proto.net());
    case v1::VirtioState::kBalloon:
      return BalloonStateFromProto(proto.balloon());
    case v1::VirtioState::DEVICE_NOT_SET:
      break;
  }
  return std::monostate{};
}

}  // namespace

void VirtioStateToProto(const VirtioState& state, v1::VirtioState* proto) {
  proto->set_device_type(state.device_type);
  proto->set_status(state.status);
  proto->set_driver_features(state.driver_features);
  proto->set_device_features_sel(state.device_features_sel);
  proto->set_driver_features_sel(state.driver_features_sel);
  proto->set_queue_sel(state.queue_sel);
  proto->set_interrupt_status(state.interrupt_status);
  proto->set_activated(state.activated);
  proto->clear_queues();
  for (const QueueState& queue : state.queues) QueueStateToProto(queue, proto->add_queues());
  DeviceStateToProto(state.device, proto);
}

VirtioState VirtioStateFromProto(const v1::VirtioState& proto) {
  VirtioState state;
  state.device_type = proto.device_type();
  state.status = proto.status();
  state.driver_features = proto.driver_features();
  state.device_features_sel = proto.device_features_sel();
  state.driver_features_sel = proto.driver_features_sel();
  state.queue_sel = proto.queue_sel();
  state.interrupt_status = proto.interrupt_status();
  state.activated = proto.activated();
  for (const v1::QueueState& queue : proto.queues()) {
    state.queues.push_back(QueueStateFromProto(queue));
  }
  state.device = DeviceStateFromProto(proto);
  return state;
}

absl::Status SaveVirtioState(const MmioTransport& transport, v1::VirtioState* proto) {
  ASSIGN_OR_RETURN(VirtioState state, transport.SaveState());
  VirtioStateToProto(state, proto);
  return absl::OkStatus();
}

absl::Status RestoreVirtioState(const v1::VirtioState& proto, MmioTransport* transport) {
  return transport->RestoreState(VirtioStateFromProto(proto));
}

}  // namespace hearth::virtio
