#include "vmm/devices/virtio/balloon/persist.h"

namespace hearth::virtio {

void BalloonStateToProto(const BalloonState& state, hearth::vmm::v1::BalloonState* proto) {
  proto->set_num_pages(state.num_pages);
  proto->set_actual(state.actual);
  for (const auto& [tag, value] : state.stats) (*proto->mutable_stats())[tag] = value;
  proto->set_stats_polling_interval_s(state.stats_polling_interval_s);
  if (state.stats_head.has_value()) {
    proto->set_has_stats_head(true);
    proto->set_stats_head(*state.stats_head);
  }
}

BalloonState BalloonStateFromProto(const hearth::vmm::v1::BalloonState& proto) {
  BalloonState state;
  state.num_pages = proto.num_pages();
  state.actual = proto.actual();
  state.stats_polling_interval_s = proto.stats_polling_interval_s();
  if (proto.has_stats_head()) state.stats_head = proto.stats_head();
  // Statistics tags are 16 bits (virtio 1.2 §5.5.6.3); a wider one in the
  // file keeps its low 16 bits.
  for (const auto& [tag, value] : proto.stats()) state.stats[static_cast<uint16_t>(tag)] = value;
  return state;
}

}  // namespace hearth::virtio
