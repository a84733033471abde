// The legacy devices' snapshot state in the snapshot format
// (hearth.vmm.v1.SerialState and I8042State): the only place that knows
// how a Serial or an I8042 is written into a snapshot and read back. The
// devices themselves save into and restore from plain structs
// (SerialState, I8042State).
#ifndef HEARTH_VMM_DEVICES_LEGACY_PERSIST_H_
#define HEARTH_VMM_DEVICES_LEGACY_PERSIST_H_

#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/legacy/i8042.h"
#include "vmm/devices/legacy/serial.h"

namespace hearth::devices {

void SaveSerialState(const Serial& serial, hearth::vmm::v1::SerialState* proto);
// Register values wider than a byte keep their low byte, as the registers do.
void RestoreSerialState(const hearth::vmm::v1::SerialState& proto, Serial* serial);

void SaveI8042State(const I8042& i8042, hearth::vmm::v1::I8042State* proto);
void RestoreI8042State(const hearth::vmm::v1::I8042State& proto, I8042* i8042);

}  // namespace hearth::devices

#endif  // HEARTH_VMM_DEVICES_LEGACY_PERSIST_H_
