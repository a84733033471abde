// A virtio device's snapshot state in the snapshot format
// (hearth.vmm.v1.VirtioState): the transport's registers and queues from
// here, the device's own state from the persist.h beside each device. The
// transport and the devices save into and restore from plain structs
// (virtio_state.h) and never see the format.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_PERSIST_H_
#define HEARTH_VMM_DEVICES_VIRTIO_PERSIST_H_

#include "absl/status/status.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/mmio_transport.h"
#include "vmm/devices/virtio/virtio_state.h"

namespace hearth::virtio {

// MmioTransport::SaveState into `proto` (all but its `id`, which the
// snapshot's owner names). Event-loop thread, vCPUs paused.
absl::Status SaveVirtioState(const MmioTransport& transport, hearth::vmm::v1::VirtioState* proto);
// MmioTransport::RestoreState from `proto`.
absl::Status RestoreVirtioState(const hearth::vmm::v1::VirtioState& proto,
                                MmioTransport* transport);

// The conversions the two functions above make.
void VirtioStateToProto(const VirtioState& state, hearth::vmm::v1::VirtioState* proto);
VirtioState VirtioStateFromProto(const hearth::vmm::v1::VirtioState& proto);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_PERSIST_H_
