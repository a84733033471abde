// Builds a Vmm from a validated VmmConfig: creates the KVM VM and its
// in-kernel interrupt controllers, guest memory, loads the kernel and initrd,
// writes the boot structures (zero page, command line, page tables, GDT, MP
// table), wires the virtio and legacy devices onto the buses and configures
// every vCPU. Nothing runs until Vmm::Start.
#ifndef HEARTH_VMM_BUILDER_H_
#define HEARTH_VMM_BUILDER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "vmm/config/vmm_config.h"
#include "vmm/devices/legacy/serial.h"
#include "vmm/devices/virtio/vsock/vsock.h"
#include "vmm/kvm/kvm.h"
#include "vmm/vmm.h"

namespace hearth::vmm {

struct BuildOptions {
  // Where the guest's serial output goes.
  std::shared_ptr<devices::SerialOutput> console;
  // Opens host sockets for guest-initiated vsock connections. Unset:
  // connect to "<uds_path>_<port>" directly (standalone mode).
  std::unique_ptr<virtio::VsockConnector> vsock_connector;
  // The event loop to run the VM on (agent mode: the one already serving
  // the control channel). Unset: a new one.
  std::unique_ptr<EventLoop> event_loop;
};

absl::StatusOr<std::unique_ptr<Vmm>> BuildVmm(kvm::Kvm kvm, VmmConfig config, BuildOptions options);

// What BuildVmm and snapshot restore share: the KVM VM with its interrupt
// controllers and PIT, `memory` registered as its slots, the event loop,
// the buses and every device of `config`, wired up but not started; no
// vCPUs, nothing loaded into memory. `virtio_cmdline` receives the
// virtio_mmio.device= announcements.
absl::StatusOr<Vmm::Parts> AssembleParts(kvm::Kvm kvm, memory::GuestMemory memory,
                                         bool track_dirty_pages, VmmConfig* config,
                                         BuildOptions* options, std::string* virtio_cmdline);

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_BUILDER_H_
