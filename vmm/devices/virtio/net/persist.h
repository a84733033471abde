// virtio-net's own snapshot state in the snapshot format (hearth.vmm.v1.NetState): the
// only code that knows how a NetState (virtio_state.h) is written into a
// snapshot and read back. vmm/devices/virtio/persist.h calls it for the
// device-specific part of a VirtioState.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_NET_PERSIST_H_
#define HEARTH_VMM_DEVICES_VIRTIO_NET_PERSIST_H_

#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/virtio_state.h"

namespace hearth::virtio {

void NetStateToProto(const NetState& state, hearth::vmm::v1::NetState* proto);
NetState NetStateFromProto(const hearth::vmm::v1::NetState& proto);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_NET_PERSIST_H_
