#include "vmm/snapshot/snapshot.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "vmm/devices/legacy/persist.h"
#include "vmm/devices/virtio/persist.h"
#include "vmm/snapshot/format.h"

namespace hearth::snapshot {
namespace {

namespace v1 = ::hearth::vmm::v1;
using vmm::Vmm;

// KVM structures travel as their raw bytes; a size that differs from this
// host's struct means another kernel ABI, refused rather than guessed at.
template <typename T>
std::string Raw(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof(T));
}

template <typename T>
absl::StatusOr<T> FromRaw(const std::string& bytes, absl::string_view what) {
  if (bytes.size() != sizeof(T)) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot ", what, " is ", bytes.size(),
                                                   " bytes; this host's is ", sizeof(T)));
  }
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

// A fresh snapshot id: the clock and pid mixed (splitmix64); no system
// call beyond the vDSO clock, so it works under the VMM's seccomp filter.
uint64_t NewSnapshotId() {
  static uint64_t counter = 0;
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  uint64_t x = static_cast<uint64_t>(now.tv_sec) * 1000000000ull +
               static_cast<uint64_t>(now.tv_nsec) + (static_cast<uint64_t>(::getpid()) << 40) +
               ++counter;
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return (x ^ (x >> 31)) | 1;
}

// Every MSR in `indices` that KVM reads for this vCPU (some in the index
// list are not readable on every host: those are skipped).
absl::StatusOr<std::vector<kvm::MsrEntry>> ReadMsrs(const kvm::Vcpu& vcpu,
                                                    const std::vector<uint32_t>& indices) {
  std::vector<kvm::MsrEntry> msrs;
  size_t next = 0;
  while (next < indices.size()) {
    absl::Span<const uint32_t> rest = absl::MakeConstSpan(indices).subspan(next);
    ASSIGN_OR_RETURN(std::vector<kvm::MsrEntry> read, vcpu.GetMsrsPrefix(rest));
    msrs.insert(msrs.end(), read.begin(), read.end());
    next += read.size() + 1;  // skip the one KVM refused
  }
  return msrs;
}

absl::Status SaveVcpu(const kvm::Vcpu& vcpu, const kvm::CpuidEntries& cpuid,
                      const std::vector<uint32_t>& msr_indices, v1::VcpuState* state) {
  state->set_id(vcpu.id());
  ASSIGN_OR_RETURN(kvm_regs regs, vcpu.GetRegs());
  state->set_regs(Raw(regs));
  ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu.GetSregs());
  state->set_sregs(Raw(sregs));
  ASSIGN_OR_RETURN(kvm::XsaveArea xsave, vcpu.GetXsave());
  state->set_xsave(Raw(xsave));
  ASSIGN_OR_RETURN(kvm_xcrs xcrs, vcpu.GetXcrs());
  state->set_xcrs(Raw(xcrs));
  ASSIGN_OR_RETURN(kvm_debugregs debugregs, vcpu.GetDebugRegs());
  state->set_debugregs(Raw(debugregs));
  ASSIGN_OR_RETURN(kvm_lapic_state lapic, vcpu.GetLapic());
  state->set_lapic(Raw(lapic));
  ASSIGN_OR_RETURN(kvm_mp_state mp_state, vcpu.GetMpState());
  state->set_mp_state(Raw(mp_state));
  ASSIGN_OR_RETURN(kvm_vcpu_events events, vcpu.GetVcpuEvents());
  state->set_events(Raw(events));
  ASSIGN_OR_RETURN(std::vector<kvm::MsrEntry> msrs, ReadMsrs(vcpu, msr_indices));
  for (const kvm::MsrEntry& msr : msrs) {
    v1::Msr* saved = state->add_msrs();
    saved->set_index(msr.index);
    saved->set_data(msr.data);
  }
  state->set_cpuid(std::string(reinterpret_cast<const char*>(cpuid.data()),
                               cpuid.size() * sizeof(kvm_cpuid_entry2)));
  return absl::OkStatus();
}

// Restores in the order KVM needs: CPUID before anything that depends on
// the features it names, the LAPIC before MSRs such as the TSC deadline,
// events last.
absl::StatusOr<kvm::CpuidEntries> RestoreVcpu(const kvm::Vcpu& vcpu, const v1::VcpuState& state) {
  const std::string& raw_cpuid = state.cpuid();
  if (raw_cpuid.empty() || raw_cpuid.size() % sizeof(kvm_cpuid_entry2) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot vCPU ", state.id(), ": bad CPUID table"));
  }
  kvm::CpuidEntries cpuid(raw_cpuid.size() / sizeof(kvm_cpuid_entry2));
  std::memcpy(cpuid.data(), raw_cpuid.data(), raw_cpuid.size());
  RETURN_IF_ERROR(vcpu.SetCpuid(cpuid));
  ASSIGN_OR_RETURN(kvm_mp_state mp_state, FromRaw<kvm_mp_state>(state.mp_state(), "mp_state"));
  RETURN_IF_ERROR(vcpu.SetMpState(mp_state));
  ASSIGN_OR_RETURN(kvm_regs regs, FromRaw<kvm_regs>(state.regs(), "regs"));
  RETURN_IF_ERROR(vcpu.SetRegs(regs));
  ASSIGN_OR_RETURN(kvm_sregs sregs, FromRaw<kvm_sregs>(state.sregs(), "sregs"));
  RETURN_IF_ERROR(vcpu.SetSregs(sregs));
  ASSIGN_OR_RETURN(kvm::XsaveArea xsave, FromRaw<kvm::XsaveArea>(state.xsave(), "xsave"));
  RETURN_IF_ERROR(vcpu.SetXsave(xsave));
  ASSIGN_OR_RETURN(kvm_xcrs xcrs, FromRaw<kvm_xcrs>(state.xcrs(), "xcrs"));
  RETURN_IF_ERROR(vcpu.SetXcrs(xcrs));
  ASSIGN_OR_RETURN(kvm_debugregs debugregs, FromRaw<kvm_debugregs>(state.debugregs(), "debugregs"));
  RETURN_IF_ERROR(vcpu.SetDebugRegs(debugregs));
  ASSIGN_OR_RETURN(kvm_lapic_state lapic, FromRaw<kvm_lapic_state>(state.lapic(), "lapic"));
  RETURN_IF_ERROR(vcpu.SetLapic(lapic));
  std::vector<kvm::MsrEntry> msrs;
  for (const v1::Msr& msr : state.msrs()) msrs.push_back({msr.index(), msr.data()});
  RETURN_IF_ERROR(vcpu.SetMsrs(msrs));
  ASSIGN_OR_RETURN(kvm_vcpu_events events, FromRaw<kvm_vcpu_events>(state.events(), "events"));
  RETURN_IF_ERROR(vcpu.SetVcpuEvents(events));
  return cpuid;
}

// The pages written since the last snapshot: KVM's log of guest writes
// or'ed with the VMM's own (device) writes, per memory slot.
absl::StatusOr<std::vector<std::vector<uint64_t>>> CollectDirtyPages(Vmm* vmm) {
  std::vector<std::vector<uint64_t>> dirty;
  const memory::GuestMemory& memory = *vmm->memory();
  for (size_t slot = 0; slot < memory.regions().size(); ++slot) {
    ASSIGN_OR_RETURN(
        std::vector<uint64_t> bits,
        vmm->vm().GetDirtyLog(static_cast<uint32_t>(slot), memory.regions()[slot].mapping.size()));
    std::vector<uint64_t> device = vmm->memory()->TakeDirtyBitmap(slot);
    if (bits.size() < device.size()) bits.resize(device.size());
    for (size_t w = 0; w < device.size(); ++w) bits[w] |= device[w];
    dirty.push_back(std::move(bits));
  }
  return dirty;
}

}  // namespace

absl::StatusOr<CreateStats> CreateSnapshot(Vmm* vmm, v1::VmSnapshot::MemoryKind kind, int state_fd,
                                           int memory_fd) {
  if (!vmm->paused()) return absl::FailedPreconditionError("the VM must be paused to snapshot it");
  if (kind == v1::VmSnapshot::DIFF) {
    if (!vmm->parts().track_dirty_pages) {
      return absl::FailedPreconditionError(
          "a Diff snapshot needs dirty page tracking (machine_config.track_dirty_pages)");
    }
    if (vmm->last_snapshot_id() == 0) {
      return absl::FailedPreconditionError(
          "a Diff snapshot records the changes since a previous snapshot; take a Full one first");
    }
  }
  CreateStats stats;
  absl::Time start = absl::Now();
  const Vmm::Parts& parts = vmm->parts();
  v1::VmSnapshot state;
  state.set_vmm_version(vmm::kVmmVersion);
  *state.mutable_config() = parts.api_config;
  state.set_memory_kind(kind);
  for (const v1::MemoryRegion& region : MemoryLayout(*parts.memory)) *state.add_memory() = region;
  state.set_memory_file_size(parts.memory->size());
  state.set_snapshot_id(NewSnapshotId());
  state.set_parent_snapshot_id(kind == v1::VmSnapshot::DIFF ? vmm->last_snapshot_id() : 0);

  ASSIGN_OR_RETURN(std::vector<uint32_t> msr_indices, parts.kvm.MsrIndexList());
  for (size_t i = 0; i < vmm->vcpu_count(); ++i) {
    RETURN_IF_ERROR(SaveVcpu(vmm->vcpu(i), parts.cpuid.at(i), msr_indices, state.add_vcpus()));
  }
  ASSIGN_OR_RETURN(kvm_irqchip pic_master, parts.vm->GetIrqchip(KVM_IRQCHIP_PIC_MASTER));
  ASSIGN_OR_RETURN(kvm_irqchip pic_slave, parts.vm->GetIrqchip(KVM_IRQCHIP_PIC_SLAVE));
  ASSIGN_OR_RETURN(kvm_irqchip ioapic, parts.vm->GetIrqchip(KVM_IRQCHIP_IOAPIC));
  ASSIGN_OR_RETURN(kvm_pit_state2 pit, parts.vm->GetPit());
  ASSIGN_OR_RETURN(kvm_clock_data clock, parts.vm->GetClock());
  state.set_pic_master(Raw(pic_master));
  state.set_pic_slave(Raw(pic_slave));
  state.set_ioapic(Raw(ioapic));
  state.set_pit(Raw(pit));
  state.set_clock(Raw(clock));

  devices::SaveSerialState(*parts.serial, state.mutable_serial());
  devices::SaveI8042State(*parts.i8042, state.mutable_i8042());
  for (const Vmm::VirtioSlot& slot : parts.virtio) {
    v1::VirtioState* device = state.add_virtio();
    RETURN_IF_ERROR(virtio::SaveVirtioState(*slot.transport, device));
    device->set_id(slot.transport->device()->name());
  }
  stats.state_time = absl::Now() - start;

  start = absl::Now();
  if (kind == v1::VmSnapshot::DIFF) {
    ASSIGN_OR_RETURN(std::vector<std::vector<uint64_t>> dirty, CollectDirtyPages(vmm));
    ASSIGN_OR_RETURN(stats.memory, WriteDiffMemory(*parts.memory, dirty, memory_fd));
  } else {
    ASSIGN_OR_RETURN(stats.memory, WriteFullMemory(*parts.memory, memory_fd));
    // A Full snapshot starts a new interval: the next Diff is relative to it.
    if (parts.track_dirty_pages) RETURN_IF_ERROR(CollectDirtyPages(vmm).status());
  }
  stats.memory_time = absl::Now() - start;

  ASSIGN_OR_RETURN(stats.state_bytes, WriteStateFile(state_fd, state));
  vmm->set_last_snapshot_id(state.snapshot_id());
  LOG(INFO) << "snapshot " << absl::StrCat(absl::Hex(state.snapshot_id())) << ": "
            << (kind == v1::VmSnapshot::DIFF ? "Diff" : "Full") << ", state " << stats.state_bytes
            << " bytes, " << stats.memory.pages_written << " of " << stats.memory.pages_total
            << " pages written";
  return stats;
}

absl::Status CheckRestoreFiles(const v1::VmSnapshot& snapshot, int memory_fd,
                               const vmm::VmmConfig& config) {
  if (snapshot.memory_kind() != v1::VmSnapshot::FULL) {
    return absl::InvalidArgumentError(
        "this is a Diff snapshot: its memory file holds only the pages changed since its base; "
        "merge it onto the base first (hearth-snapshot merge)");
  }
  const uint64_t ram = uint64_t{config.machine.mem_size_mib} << 20;
  if (snapshot.memory_file_size() != ram) {
    return absl::InvalidArgumentError(absl::StrCat("the snapshot's memory is ",
                                                   snapshot.memory_file_size(),
                                                   " bytes; its configuration says ", ram));
  }
  if (static_cast<uint32_t>(snapshot.vcpus_size()) != config.machine.vcpu_count) {
    return absl::InvalidArgumentError(absl::StrCat("the snapshot has ", snapshot.vcpus_size(),
                                                   " vCPUs; its configuration says ",
                                                   config.machine.vcpu_count));
  }
  struct stat st;
  if (::fstat(memory_fd, &st) < 0) return ErrnoStatus("fstat the memory file");
  if (static_cast<uint64_t>(st.st_size) != snapshot.memory_file_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the memory file is ", st.st_size, " bytes but the snapshot's guest RAM is ",
                     snapshot.memory_file_size(), ": not this snapshot's memory"));
  }
  for (const vmm::DriveConfig& drive : config.drives) {
    for (const v1::VirtioState& device : snapshot.virtio()) {
      if (device.id() != "block " + drive.drive_id || !device.has_block()) continue;
      ASSIGN_OR_RETURN(uint64_t sectors, virtio::DriveSectors(drive.file.get(), drive.drive_id));
      if (sectors != device.block().capacity()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "drive \"", drive.drive_id, "\" has ", sectors, " sectors; the snapshot's had ",
            device.block().capacity(), " (a restored drive must keep its size)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vmm>> RestoreVmm(kvm::Kvm kvm, const v1::VmSnapshot& snapshot,
                                                UniqueFd memory_file, vmm::VmmConfig config,
                                                vmm::BuildOptions options, bool track_dirty_pages) {
  RETURN_IF_ERROR(CheckRestoreFiles(snapshot, memory_file.get(), config));
  std::vector<v1::MemoryRegion> layout(snapshot.memory().begin(), snapshot.memory().end());
  ASSIGN_OR_RETURN(memory::GuestMemory memory,
                   MapMemoryFile(memory_file.get(), layout, snapshot.memory_file_size()));
  std::string unused_cmdline;
  ASSIGN_OR_RETURN(Vmm::Parts parts,
                   vmm::AssembleParts(std::move(kvm), std::move(memory), track_dirty_pages, &config,
                                      &options, &unused_cmdline));
  if (parts.virtio.size() != static_cast<size_t>(snapshot.virtio_size())) {
    return absl::InvalidArgumentError(absl::StrCat("the snapshot has ", snapshot.virtio_size(),
                                                   " virtio devices; its configuration makes ",
                                                   parts.virtio.size()));
  }

  // The interrupt controllers and clocks first: restoring devices may raise
  // interrupt lines, which must reach the restored IOAPIC.
  ASSIGN_OR_RETURN(kvm_irqchip pic_master, FromRaw<kvm_irqchip>(snapshot.pic_master(), "PIC"));
  ASSIGN_OR_RETURN(kvm_irqchip pic_slave, FromRaw<kvm_irqchip>(snapshot.pic_slave(), "PIC"));
  ASSIGN_OR_RETURN(kvm_irqchip ioapic, FromRaw<kvm_irqchip>(snapshot.ioapic(), "IOAPIC"));
  ASSIGN_OR_RETURN(kvm_pit_state2 pit, FromRaw<kvm_pit_state2>(snapshot.pit(), "PIT"));
  ASSIGN_OR_RETURN(kvm_clock_data clock, FromRaw<kvm_clock_data>(snapshot.clock(), "clock"));
  RETURN_IF_ERROR(parts.vm->SetPit(pit));
  clock.flags = 0;  // the flags KVM_GET_CLOCK reports are not all settable
  RETURN_IF_ERROR(parts.vm->SetClock(clock));
  RETURN_IF_ERROR(parts.vm->SetIrqchip(pic_master));
  RETURN_IF_ERROR(parts.vm->SetIrqchip(pic_slave));
  RETURN_IF_ERROR(parts.vm->SetIrqchip(ioapic));

  for (const v1::VcpuState& state : snapshot.vcpus()) {
    ASSIGN_OR_RETURN(kvm::Vcpu vcpu, kvm::Vcpu::Create(parts.kvm, *parts.vm, state.id()));
    ASSIGN_OR_RETURN(kvm::CpuidEntries cpuid, RestoreVcpu(vcpu, state));
    parts.vcpus.push_back(std::move(vcpu));
    parts.cpuid.push_back(std::move(cpuid));
  }

  devices::RestoreSerialState(snapshot.serial(), parts.serial.get());
  devices::RestoreI8042State(snapshot.i8042(), parts.i8042.get());
  for (size_t i = 0; i < parts.virtio.size(); ++i) {
    const v1::VirtioState& state = snapshot.virtio(static_cast<int>(i));
    const std::string name = parts.virtio[i].transport->device()->name();
    if (state.id() != name) {
      return absl::InvalidArgumentError(absl::StrCat("virtio device ", i, " is \"", state.id(),
                                                     "\" in the snapshot but \"", name, "\" here"));
    }
    RETURN_IF_ERROR(virtio::RestoreVirtioState(state, parts.virtio[i].transport.get()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Vmm> vmm, Vmm::Create(std::move(parts)));
  vmm->set_last_snapshot_id(snapshot.snapshot_id());
  return vmm;
}

}  // namespace hearth::snapshot
