#include "vmm/devices/virtio/net/persist.h"

namespace hearth::virtio {

void NetStateToProto(const NetState& state, hearth::vmm::v1::NetState* proto) {
  if (!state.pending_rx.has_value()) return;
  proto->set_has_pending_rx(true);
  proto->set_pending_rx_head(state.pending_rx->head);
  proto->set_pending_rx_length(state.pending_rx->length);
}

NetState NetStateFromProto(const hearth::vmm::v1::NetState& proto) {
  NetState state;
  if (proto.has_pending_rx()) {
    state.pending_rx = NetState::PendingRx{proto.pending_rx_head(), proto.pending_rx_length()};
  }
  return state;
}

}  // namespace hearth::virtio
