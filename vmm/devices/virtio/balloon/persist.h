// virtio-balloon's own snapshot state in the snapshot format (hearth.vmm.v1.BalloonState): the
// only code that knows how a BalloonState (virtio_state.h) is written into a
// snapshot and read back. vmm/devices/virtio/persist.h calls it for the
// device-specific part of a VirtioState.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_BALLOON_PERSIST_H_
#define HEARTH_VMM_DEVICES_VIRTIO_BALLOON_PERSIST_H_

#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/virtio_state.h"

namespace hearth::virtio {

void BalloonStateToProto(const BalloonState& state, hearth::vmm::v1::BalloonState* proto);
BalloonState BalloonStateFromProto(const hearth::vmm::v1::BalloonState& proto);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_BALLOON_PERSIST_H_
