#include "vmm/devices/virtio/block/persist.h"

namespace hearth::virtio {

void BlockStateToProto(const BlockState& state, hearth::vmm::v1::BlockState* proto) {
  proto->set_capacity(state.capacity);
}

BlockState BlockStateFromProto(const hearth::vmm::v1::BlockState& proto) {
  return BlockState{proto.capacity()};
}

}  // namespace hearth::virtio
