// Owners for the three kinds of KVM file descriptor: the system (/dev/kvm),
// a VM, and a vCPU. Each wraps the ioctls Hearth uses and turns failures into
// Status values naming the ioctl and its arguments. Nothing here knows about
// devices, boot or guest memory layout.
#ifndef HEARTH_VMM_KVM_KVM_H_
#define HEARTH_VMM_KVM_KVM_H_

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/mmap_region.h"
#include "common/unique_fd.h"

namespace hearth::kvm {

// kvm_cpuid2 / kvm_msrs / kvm_msr_list end in flexible arrays; these are the
// plain-vector forms passed around instead.
using CpuidEntries = std::vector<kvm_cpuid_entry2>;
struct MsrEntry {
  uint32_t index;
  uint64_t data;
};
// KVM_GET/SET_XSAVE's 4 KiB area: struct kvm_xsave without the flexible
// `extra` array newer headers end it with (a StatusOr cannot hold a type
// with a flexible array member; clang refuses it).
struct XsaveArea {
  uint32_t region[1024];
};

// The ioctl request numbers that read a VM's state (CreateSnapshot), for
// the seccomp filter of the thread that snapshots.
std::vector<unsigned long> StateReadingIoctls();

class Kvm {
 public:
  // Opens /dev/kvm (standalone mode only: a jailed VMM receives the fd).
  static absl::StatusOr<Kvm> Open();
  // Takes an already open /dev/kvm descriptor and checks the API version.
  static absl::StatusOr<Kvm> FromFd(UniqueFd fd);

  absl::StatusOr<size_t> VcpuMmapSize() const;
  absl::StatusOr<CpuidEntries> SupportedCpuid() const;
  // MSR indices KVM can save and restore (KVM_GET_MSR_INDEX_LIST).
  absl::StatusOr<std::vector<uint32_t>> MsrIndexList() const;

  int fd() const { return fd_.get(); }

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class Vm {
 public:
  static absl::StatusOr<Vm> Create(const Kvm& kvm);

  absl::Status SetUserMemoryRegion(uint32_t slot, uint64_t guest_address, uint64_t size,
                                   void* host_address, uint32_t flags) const;
  absl::Status SetTssAddress(uint64_t address) const;
  absl::Status SetIdentityMapAddress(uint64_t address) const;
  // In-kernel PIC + IOAPIC + per-vCPU LAPIC, and the in-kernel PIT.
  absl::Status CreateIrqchip() const;
  absl::Status CreatePit() const;
  // Drives an interrupt line (edge: raise then lower).
  absl::Status SetIrqLine(uint32_t gsi, bool level) const;
  // A guest write to [address, +length) in MMIO (or a PIO port) signals
  // `eventfd` in the kernel instead of exiting to user space.
  absl::Status RegisterIoEventFd(int eventfd, uint64_t address, uint32_t length, bool pio,
                                 std::optional<uint64_t> datamatch) const;
  // A write to `eventfd` injects an edge on `gsi`.
  absl::Status RegisterIrqFd(int eventfd, uint32_t gsi) const;
  // Pages written by the guest in `slot` since the last call (bit per page).
  absl::StatusOr<std::vector<uint64_t>> GetDirtyLog(uint32_t slot, uint64_t size) const;

  absl::StatusOr<kvm_clock_data> GetClock() const;
  absl::Status SetClock(const kvm_clock_data& clock) const;
  absl::StatusOr<kvm_irqchip> GetIrqchip(uint32_t chip_id) const;
  absl::Status SetIrqchip(const kvm_irqchip& chip) const;
  absl::StatusOr<kvm_pit_state2> GetPit() const;
  absl::Status SetPit(const kvm_pit_state2& pit) const;

  int fd() const { return fd_.get(); }

 private:
  explicit Vm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class Vcpu {
 public:
  static absl::StatusOr<Vcpu> Create(const Kvm& kvm, const Vm& vm, uint32_t id);

  // KVM_RUN. Returns the (kernel-written) kvm_run structure's exit reason;
  // EINTR (a kick from another thread) is reported as KVM_EXIT_INTR.
  absl::StatusOr<uint32_t> Run() const;
  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  absl::StatusOr<kvm_regs> GetRegs() const;
  absl::Status SetRegs(const kvm_regs& regs) const;
  absl::StatusOr<kvm_sregs> GetSregs() const;
  absl::Status SetSregs(const kvm_sregs& sregs) const;
  absl::Status SetFpu(const kvm_fpu& fpu) const;
  absl::Status SetCpuid(const CpuidEntries& entries) const;
  absl::Status SetMsrs(absl::Span<const MsrEntry> msrs) const;
  // Reads MSRs in order until KVM refuses one: the ones read (a prefix of
  // `indices`).
  absl::StatusOr<std::vector<MsrEntry>> GetMsrsPrefix(absl::Span<const uint32_t> indices) const;
  absl::StatusOr<kvm_lapic_state> GetLapic() const;
  absl::Status SetLapic(const kvm_lapic_state& lapic) const;
  absl::StatusOr<kvm_mp_state> GetMpState() const;
  absl::Status SetMpState(const kvm_mp_state& state) const;
  absl::StatusOr<kvm_vcpu_events> GetVcpuEvents() const;
  absl::Status SetVcpuEvents(const kvm_vcpu_events& events) const;
  absl::StatusOr<XsaveArea> GetXsave() const;
  absl::Status SetXsave(const XsaveArea& xsave) const;
  absl::StatusOr<kvm_xcrs> GetXcrs() const;
  absl::Status SetXcrs(const kvm_xcrs& xcrs) const;
  absl::StatusOr<kvm_debugregs> GetDebugRegs() const;
  absl::Status SetDebugRegs(const kvm_debugregs& regs) const;

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }

 private:
  Vcpu(uint32_t id, UniqueFd fd, MmapRegion run)
      : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}
  uint32_t id_;
  UniqueFd fd_;
  MmapRegion run_;
};

}  // namespace hearth::kvm

#endif  // HEARTH_VMM_KVM_KVM_H_
