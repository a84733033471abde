#include "vmm/builder.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/arch/x86_64/boot_params.h"
#include "vmm/arch/x86_64/cpuid.h"
#include "vmm/arch/x86_64/layout.h"
#include "vmm/arch/x86_64/mptable.h"
#include "vmm/arch/x86_64/regs.h"
#include "vmm/devices/interrupt.h"
#include "vmm/loader/cmdline.h"
#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/rate_limiter/rate_limiter.h"

namespace hearth::vmm {
namespace {

absl::StatusOr<kvm::Vm> CreateVm(const kvm::Kvm& kvm) {
  ASSIGN_OR_RETURN(kvm::Vm vm, kvm::Vm::Create(kvm));
  RETURN_IF_ERROR(vm.SetTssAddress(x86::layout::kKvmTssAddress));
  RETURN_IF_ERROR(vm.SetIdentityMapAddress(x86::layout::kKvmIdentityMapAddress));
  RETURN_IF_ERROR(vm.CreateIrqchip());
  RETURN_IF_ERROR(vm.CreatePit());
  return vm;
}

// One KVM memory slot per region, in order (slot i is region i: the dirty
// log is read per slot).
absl::Status RegisterMemory(const kvm::Vm& vm, const memory::GuestMemory& memory,
                            bool track_dirty_pages) {
  uint32_t flags = track_dirty_pages ? KVM_MEM_LOG_DIRTY_PAGES : 0;
  for (size_t slot = 0; slot < memory.regions().size(); ++slot) {
    const memory::GuestMemory::Region& region = memory.regions()[slot];
    RETURN_IF_ERROR(vm.SetUserMemoryRegion(static_cast<uint32_t>(slot), region.guest_address,
                                           region.mapping.size(), region.mapping.data(), flags));
  }
  return absl::OkStatus();
}

// Loads kernel and initrd and writes every boot structure. `extra_cmdline`
// (the virtio-mmio device announcements) goes after the user's boot_args.
absl::Status LoadGuest(BootConfig* boot, uint32_t vcpu_count, const std::string& extra_cmdline,
                       memory::GuestMemory* memory, uint64_t* entry) {
  ASSIGN_OR_RETURN(loader::FdImageSource kernel_image,
                   loader::FdImageSource::Create(std::move(boot->kernel), "kernel"));
  ASSIGN_OR_RETURN(loader::LoadedKernel kernel, loader::LoadKernel(kernel_image, memory));
  x86::BootParamsInput params;
  params.kernel_header = kernel.setup_header;
  if (boot->initrd.valid()) {
    ASSIGN_OR_RETURN(loader::FdImageSource initrd_image,
                     loader::FdImageSource::Create(std::move(boot->initrd), "initrd"));
    ASSIGN_OR_RETURN(loader::LoadedInitrd initrd, loader::LoadInitrd(initrd_image, kernel, memory));
    params.initrd_address = initrd.address;
    params.initrd_size = initrd.size;
  }
  loader::Cmdline cmdline(x86::layout::kCmdlineMaxSize);
  RETURN_IF_ERROR(cmdline.Append(boot->boot_args));
  RETURN_IF_ERROR(cmdline.Append(extra_cmdline));
  RETURN_IF_ERROR(cmdline.WriteTo(memory, x86::layout::kCmdlineAddress));
  params.cmdline_address = x86::layout::kCmdlineAddress;
  params.cmdline_size = cmdline.size_with_nul();
  params.e820 = x86::BuildE820Map(memory->size());
  ASSIGN_OR_RETURN(x86::BootParams zero_page, x86::BuildBootParams(params));
  RETURN_IF_ERROR(memory->WriteObject(x86::layout::kZeroPageAddress, zero_page));
  RETURN_IF_ERROR(x86::WriteBootTables(memory));
  RETURN_IF_ERROR(x86::WriteMpTable(memory, vcpu_count));
  *entry = kernel.entry;
  return absl::OkStatus();
}

// An edge on `gsi` through KVM_IRQ_LINE, for the low-rate legacy devices.
// (Each irqfd costs an SRCU grace period when the VM is torn down, ~6 ms on
// PVM hosts; the serial port and the i8042 do not need one.)
class IrqLineInterrupt : public devices::Interrupt {
 public:
  IrqLineInterrupt(const kvm::Vm* vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  void Trigger() override {
    // A failed ioctl loses the interrupt: counted, like an irqfd's, and
    // logged (rate-limited: this runs on vCPU threads, per byte of output).
    absl::Status raised = vm_->SetIrqLine(gsi_, true);
    absl::Status lowered = vm_->SetIrqLine(gsi_, false);
    if (raised.ok() && lowered.ok()) return;
    failures_.fetch_add(1, std::memory_order_relaxed);
    LOG_EVERY_N(WARNING, 1000) << "KVM_IRQ_LINE gsi " << gsi_ << ": "
                               << (raised.ok() ? lowered : raised).message();
  }
  uint64_t failures() const override { return failures_.load(std::memory_order_relaxed); }

 private:
  const kvm::Vm* vm_;
  uint32_t gsi_;
  std::atomic<uint64_t> failures_{0};
};

// Puts `device` on the MMIO bus behind a virtio-mmio transport: the next
// 4 KiB window and GSI, an irqfd for its interrupt, an ioeventfd per queue
// (QueueNotify with the queue index as datamatch) served by the event loop.
absl::Status AddVirtioDevice(std::shared_ptr<virtio::VirtioDevice> device, Vmm::Parts* parts,
                             std::string* cmdline) {
  const size_t index = parts->virtio.size();
  const uint32_t gsi = x86::layout::kFirstVirtioGsi + static_cast<uint32_t>(index);
  if (gsi > x86::layout::kLastVirtioGsi) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many virtio devices: at most ",
                     x86::layout::kLastVirtioGsi - x86::layout::kFirstVirtioGsi + 1));
  }
  const uint64_t base = x86::layout::kVirtioMmioStart + index * x86::layout::kVirtioMmioWindowSize;
  ASSIGN_OR_RETURN(EventFd irq, EventFd::Create());
  RETURN_IF_ERROR(parts->vm->RegisterIrqFd(irq.fd(), gsi));
  Vmm::VirtioSlot slot;
  slot.mmio_base = base;
  slot.gsi = gsi;
  slot.transport = std::make_shared<virtio::MmioTransport>(
      std::move(device), parts->memory.get(), parts->event_loop.get(),
      std::make_unique<devices::EventFdInterrupt>(std::move(irq)));
  RETURN_IF_ERROR(
      parts->mmio_bus->Insert(slot.transport, base, x86::layout::kVirtioMmioWindowSize));
  for (uint32_t queue = 0; queue < slot.transport->queue_count(); ++queue) {
    ASSIGN_OR_RETURN(EventFd notify, EventFd::Create());
    RETURN_IF_ERROR(parts->vm->RegisterIoEventFd(notify.fd(), base + virtio::kMmioQueueNotify, 4,
                                                 /*pio=*/false, queue));
    virtio::MmioTransport* transport = slot.transport.get();
    const int fd = notify.fd();
    slot.notify_events.push_back(std::move(notify));
    RETURN_IF_ERROR(parts->event_loop->Add(fd, [transport, queue, fd](uint32_t) {
      uint64_t count = 0;  // drain the eventfd; the count does not matter
      // Drained for its readiness only; EAGAIN means already drained.
      (void)!::read(fd, &count, sizeof(count));
      transport->Notify(queue);
    }));
  }
  absl::StrAppend(cmdline, cmdline->empty() ? "" : " ", "virtio_mmio.device=4K@0x", absl::Hex(base),
                  ":", gsi);
  parts->virtio.push_back(std::move(slot));
  return absl::OkStatus();
}

absl::Status AddVirtioDevices(VmmConfig* config, BuildOptions* options, Vmm::Parts* parts,
                              std::string* cmdline) {
  for (DriveConfig& drive : config->drives) {
    ASSIGN_OR_RETURN(auto limiter, RateLimiter::Create(drive.rate_limiter));
    ASSIGN_OR_RETURN(std::shared_ptr<virtio::Block> block,
                     virtio::Block::Create(drive.drive_id, std::move(drive.file), drive.read_only,
                                           std::move(limiter)));
    parts->blocks.push_back(block);
    RETURN_IF_ERROR(AddVirtioDevice(block, parts, cmdline));
  }
  for (NetConfig& iface : config->network_interfaces) {
    ASSIGN_OR_RETURN(auto rx, RateLimiter::Create(iface.rx_rate_limiter));
    ASSIGN_OR_RETURN(auto tx, RateLimiter::Create(iface.tx_rate_limiter));
    ASSIGN_OR_RETURN(std::shared_ptr<virtio::Net> net,
                     virtio::Net::Create(iface.iface_id, std::move(iface.tap), iface.guest_mac,
                                         iface.mtu, std::move(rx), std::move(tx)));
    parts->nets.push_back(net);
    RETURN_IF_ERROR(AddVirtioDevice(net, parts, cmdline));
  }
  if (config->entropy.has_value()) {
    ASSIGN_OR_RETURN(auto limiter, RateLimiter::Create(config->entropy->rate_limiter));
    parts->rng = std::make_shared<virtio::Rng>(std::move(limiter));
    RETURN_IF_ERROR(AddVirtioDevice(parts->rng, parts, cmdline));
  }
  if (config->balloon.has_value()) {
    ASSIGN_OR_RETURN(
        parts->balloon,
        virtio::Balloon::Create(config->balloon->amount_mib, config->balloon->deflate_on_oom,
                                config->balloon->stats_polling_interval_s));
    RETURN_IF_ERROR(AddVirtioDevice(parts->balloon, parts, cmdline));
  }
  if (config->vsock.has_value()) {
    std::unique_ptr<virtio::VsockConnector> connector =
        options->vsock_connector
            ? std::move(options->vsock_connector)
            : std::make_unique<virtio::PathVsockConnector>(config->vsock->uds_path);
    parts->vsock = std::make_shared<virtio::Vsock>(
        config->vsock->guest_cid, std::move(config->vsock->listener), std::move(connector));
    RETURN_IF_ERROR(AddVirtioDevice(parts->vsock, parts, cmdline));
  }
  return absl::OkStatus();
}

absl::Status ConfigureVcpu(const kvm::Vcpu& vcpu, const MachineConfig& machine,
                           const kvm::CpuidEntries& supported_cpuid, uint64_t entry,
                           kvm::CpuidEntries* cpuid_out) {
  kvm::CpuidEntries cpuid = supported_cpuid;
  RETURN_IF_ERROR(x86::NormalizeCpuid({vcpu.id(), machine.vcpu_count, machine.smt}, &cpuid));
  RETURN_IF_ERROR(vcpu.SetCpuid(cpuid));
  *cpuid_out = cpuid;
  RETURN_IF_ERROR(vcpu.SetMsrs(x86::BootMsrs()));
  RETURN_IF_ERROR(vcpu.SetFpu(x86::BootFpu()));
  ASSIGN_OR_RETURN(kvm_lapic_state lapic, vcpu.GetLapic());
  x86::SetLocalInterrupts(&lapic);
  RETURN_IF_ERROR(vcpu.SetLapic(lapic));
  // Application processors wait in KVM for INIT/SIPI from the guest; only
  // the bootstrap processor starts at the kernel's entry point.
  if (vcpu.id() != 0) return absl::OkStatus();
  RETURN_IF_ERROR(vcpu.SetRegs(x86::BootRegs(entry)));
  ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu.GetSregs());
  x86::SetBootSregs(&sregs);
  return vcpu.SetSregs(sregs);
}

}  // namespace

absl::StatusOr<Vmm::Parts> AssembleParts(kvm::Kvm kvm, memory::GuestMemory memory,
                                         bool track_dirty_pages, VmmConfig* config,
                                         BuildOptions* options, std::string* virtio_cmdline) {
  ASSIGN_OR_RETURN(kvm::Vm vm, CreateVm(kvm));
  RETURN_IF_ERROR(RegisterMemory(vm, memory, track_dirty_pages));
  Vmm::Parts parts{std::move(kvm), std::make_unique<kvm::Vm>(std::move(vm)),
                   std::make_unique<memory::GuestMemory>(std::move(memory))};
  if (track_dirty_pages) parts.memory->EnableDirtyTracking();
  if (options->event_loop) {
    parts.event_loop = std::move(options->event_loop);
  } else {
    ASSIGN_OR_RETURN(parts.event_loop, EventLoop::Create());
  }
  parts.pio_bus = std::make_unique<bus::Bus>();
  parts.mmio_bus = std::make_unique<bus::Bus>();
  parts.metrics_file = std::move(config->metrics);
  parts.api_config = config->api;
  parts.track_dirty_pages = track_dirty_pages;

  RETURN_IF_ERROR(AddVirtioDevices(config, options, &parts, virtio_cmdline));

  ASSIGN_OR_RETURN(EventFd reset_event, EventFd::Create());
  parts.reset_event = std::make_shared<EventFd>(std::move(reset_event));
  parts.serial = std::make_shared<devices::Serial>(
      std::make_unique<IrqLineInterrupt>(parts.vm.get(), x86::layout::kCom1Gsi), options->console);
  RETURN_IF_ERROR(
      parts.pio_bus->Insert(parts.serial, x86::layout::kCom1Port, x86::layout::kCom1PortCount));
  parts.i8042 = std::make_shared<devices::I8042>(
      std::make_unique<IrqLineInterrupt>(parts.vm.get(), x86::layout::kI8042Gsi),
      [reset_event = parts.reset_event] {
        // Cannot fail: the counter would have to reach 2^64 - 2 unread.
        (void)reset_event->Write(1);
      });
  RETURN_IF_ERROR(
      parts.pio_bus->Insert(parts.i8042, x86::layout::kI8042Port, x86::layout::kI8042PortCount));
  return parts;
}

absl::StatusOr<std::unique_ptr<Vmm>> BuildVmm(kvm::Kvm kvm, VmmConfig config,
                                              BuildOptions options) {
  const MachineConfig& machine = config.machine;
  memory::GuestMemory::Options memory_options;
  memory_options.huge_pages = machine.huge_pages;
  ASSIGN_OR_RETURN(memory::GuestMemory memory,
                   memory::GuestMemory::CreateAnonymous(machine.mem_size_mib * x86::layout::kMiB,
                                                        memory_options));
  std::string virtio_cmdline;
  ASSIGN_OR_RETURN(Vmm::Parts parts,
                   AssembleParts(std::move(kvm), std::move(memory), machine.track_dirty_pages,
                                 &config, &options, &virtio_cmdline));
  uint64_t entry = 0;
  RETURN_IF_ERROR(
      LoadGuest(&config.boot, machine.vcpu_count, virtio_cmdline, parts.memory.get(), &entry));

  ASSIGN_OR_RETURN(kvm::CpuidEntries supported, parts.kvm.SupportedCpuid());
  for (uint32_t id = 0; id < machine.vcpu_count; ++id) {
    ASSIGN_OR_RETURN(kvm::Vcpu vcpu, kvm::Vcpu::Create(parts.kvm, *parts.vm, id));
    kvm::CpuidEntries cpuid;
    RETURN_IF_ERROR(ConfigureVcpu(vcpu, machine, supported, entry, &cpuid));
    parts.vcpus.push_back(std::move(vcpu));
    parts.cpuid.push_back(std::move(cpuid));
  }
  return Vmm::Create(std::move(parts));
}

}  // namespace hearth::vmm
