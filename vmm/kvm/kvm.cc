#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"

namespace hearth::kvm {
namespace {

// ioctl(2) with EINTR retried and a Status naming the request on failure.
absl::StatusOr<int> Ioctl(int fd, unsigned long request, const char* name, unsigned long arg) {
  int rc = RetryOnEintr([&] { return ::ioctl(fd, request, arg); });
  if (rc < 0) return ErrnoStatus(name);
  return rc;
}

template <typename T>
absl::StatusOr<int> IoctlPtr(int fd, unsigned long request, const char* name, T* arg) {
  return Ioctl(fd, request, name, reinterpret_cast<unsigned long>(arg));
}

#define HEARTH_IOCTL(fd, request, arg) IoctlPtr(fd, request, #request, arg)

// KVM ioctls whose argument is a struct the kernel fills in.
template <typename T>
absl::StatusOr<T> GetStruct(int fd, unsigned long request, const char* name) {
  T value;
  std::memset(&value, 0, sizeof(value));
  RETURN_IF_ERROR(IoctlPtr(fd, request, name, &value).status());
  return value;
}

template <typename T>
absl::Status SetStruct(int fd, unsigned long request, const char* name, const T& value) {
  return IoctlPtr(fd, request, name, const_cast<T*>(&value)).status();
}

// Variable-length KVM structures (header + flexible array) in a buffer of
// 64-bit words, so the header is suitably aligned.
template <typename Header, typename Entry>
class FlexibleArray {
 public:
  explicit FlexibleArray(size_t count)
      : words_((sizeof(Header) + count * sizeof(Entry) + 7) / 8, 0) {}
  Header* header() { return reinterpret_cast<Header*>(words_.data()); }
  Entry* entries() {
    return reinterpret_cast<Entry*>(reinterpret_cast<char*>(words_.data()) + sizeof(Header));
  }

 private:
  std::vector<uint64_t> words_;
};

// Debian's kernel headers declare flexible arrays with __DECLARE_FLEX_ARRAY,
// whose empty member struct has size 1 in C++ (0 in C). sizeof() of those
// structs, and so the size encoded in their _IOWR() request numbers, then
// differs from the kernel's, which answers EINVAL. These are the C layouts
// of the headers and the request numbers built from them.
struct CpuidHeader {  // struct kvm_cpuid2 without entries
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {  // struct kvm_msrs without entries
  uint32_t nmsrs;
  uint32_t pad;
};
struct MsrListHeader {  // struct kvm_msr_list without indices
  uint32_t nmsrs;
};
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveArea);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveArea);
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(MsrListHeader) == 4 &&
              sizeof(XsaveArea) == 4096);

constexpr int kKvmApiVersion = 12;
constexpr size_t kMaxCpuidEntries = 256;
constexpr size_t kMaxMsrIndices = 1024;

}  // namespace

std::vector<unsigned long> StateReadingIoctls() {
  return {KVM_GET_REGS,      KVM_GET_SREGS,    kGetXsave,        KVM_GET_XCRS,
          KVM_GET_DEBUGREGS, KVM_GET_LAPIC,    KVM_GET_MP_STATE, KVM_GET_VCPU_EVENTS,
          kGetMsrs,          kGetMsrIndexList, KVM_GET_IRQCHIP,  KVM_GET_PIT2,
          KVM_GET_CLOCK,     KVM_GET_DIRTY_LOG};
}

absl::StatusOr<Kvm> Kvm::Open() {
  int fd = RetryOnEintr([] { return ::open("/dev/kvm", O_RDWR | O_CLOEXEC); });
  if (fd < 0) return ErrnoStatus("open /dev/kvm");
  return FromFd(UniqueFd(fd));
}

absl::StatusOr<Kvm> Kvm::FromFd(UniqueFd fd) {
  ASSIGN_OR_RETURN(int version, Ioctl(fd.get(), KVM_GET_API_VERSION, "KVM_GET_API_VERSION", 0));
  if (version != kKvmApiVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("KVM API version ", version, ", Hearth needs ", kKvmApiVersion));
  }
  return Kvm(std::move(fd));
}

absl::StatusOr<size_t> Kvm::VcpuMmapSize() const {
  ASSIGN_OR_RETURN(int size, Ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE", 0));
  return static_cast<size_t>(size);
}

absl::StatusOr<CpuidEntries> Kvm::SupportedCpuid() const {
  FlexibleArray<CpuidHeader, kvm_cpuid_entry2> buffer(kMaxCpuidEntries);
  buffer.header()->nent = kMaxCpuidEntries;
  RETURN_IF_ERROR(
      IoctlPtr(fd_.get(), kGetSupportedCpuid, "KVM_GET_SUPPORTED_CPUID", buffer.header()).status());
  return CpuidEntries(buffer.entries(), buffer.entries() + buffer.header()->nent);
}

absl::StatusOr<std::vector<uint32_t>> Kvm::MsrIndexList() const {
  FlexibleArray<MsrListHeader, uint32_t> buffer(kMaxMsrIndices);
  buffer.header()->nmsrs = kMaxMsrIndices;
  RETURN_IF_ERROR(
      IoctlPtr(fd_.get(), kGetMsrIndexList, "KVM_GET_MSR_INDEX_LIST", buffer.header()).status());
  return std::vector<uint32_t>(buffer.entries(), buffer.entries() + buffer.header()->nmsrs);
}

absl::StatusOr<Vm> Vm::Create(const Kvm& kvm) {
  ASSIGN_OR_RETURN(int fd, Ioctl(kvm.fd(), KVM_CREATE_VM, "KVM_CREATE_VM", 0));
  return Vm(UniqueFd(fd));
}

absl::Status Vm::SetUserMemoryRegion(uint32_t slot, uint64_t guest_address, uint64_t size,
                                     void* host_address, uint32_t flags) const {
  kvm_userspace_memory_region region = {};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest_address;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host_address);
  auto rc = HEARTH_IOCTL(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region);
  if (!rc.ok()) {
    return absl::Status(rc.status().code(),
                        absl::StrCat(rc.status().message(), " (slot=", slot, " guest=0x",
                                     absl::Hex(guest_address), " size=0x", absl::Hex(size), ")"));
  }
  return absl::OkStatus();
}

absl::Status Vm::SetTssAddress(uint64_t address) const {
  return Ioctl(fd_.get(), KVM_SET_TSS_ADDR, "KVM_SET_TSS_ADDR", address).status();
}

absl::Status Vm::SetIdentityMapAddress(uint64_t address) const {
  return HEARTH_IOCTL(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &address).status();
}

absl::Status Vm::CreateIrqchip() const {
  return Ioctl(fd_.get(), KVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP", 0).status();
}

absl::Status Vm::CreatePit() const {
  kvm_pit_config config = {};
  // The PIT's speaker port (0x61) is emulated in the kernel as well, so
  // Linux's PIT calibration does not exit to user space.
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  return HEARTH_IOCTL(fd_.get(), KVM_CREATE_PIT2, &config).status();
}

absl::Status Vm::SetIrqLine(uint32_t gsi, bool level) const {
  kvm_irq_level irq = {};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  return HEARTH_IOCTL(fd_.get(), KVM_IRQ_LINE, &irq).status();
}

namespace {

kvm_ioeventfd MakeIoEventFd(int eventfd, uint64_t address, uint32_t length, bool pio,
                            std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io = {};
  io.fd = eventfd;
  io.addr = address;
  io.len = length;
  if (pio) io.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (datamatch.has_value()) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  return io;
}

}  // namespace

absl::Status Vm::RegisterIoEventFd(int eventfd, uint64_t address, uint32_t length, bool pio,
                                   std::optional<uint64_t> datamatch) const {
  kvm_ioeventfd io = MakeIoEventFd(eventfd, address, length, pio, datamatch);
  return HEARTH_IOCTL(fd_.get(), KVM_IOEVENTFD, &io).status();
}

absl::Status Vm::RegisterIrqFd(int eventfd, uint32_t gsi) const {
  kvm_irqfd irqfd = {};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  return HEARTH_IOCTL(fd_.get(), KVM_IRQFD, &irqfd).status();
}

absl::StatusOr<std::vector<uint64_t>> Vm::GetDirtyLog(uint32_t slot, uint64_t size) const {
  uint64_t pages = (size + 4095) / 4096;
  std::vector<uint64_t> bitmap((pages + 63) / 64, 0);
  kvm_dirty_log log = {};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  RETURN_IF_ERROR(HEARTH_IOCTL(fd_.get(), KVM_GET_DIRTY_LOG, &log).status());
  return bitmap;
}

absl::StatusOr<kvm_clock_data> Vm::GetClock() const {
  return GetStruct<kvm_clock_data>(fd_.get(), KVM_GET_CLOCK, "KVM_GET_CLOCK");
}
absl::Status Vm::SetClock(const kvm_clock_data& clock) const {
  return SetStruct(fd_.get(), KVM_SET_CLOCK, "KVM_SET_CLOCK", clock);
}
absl::StatusOr<kvm_irqchip> Vm::GetIrqchip(uint32_t chip_id) const {
  kvm_irqchip chip;
  std::memset(&chip, 0, sizeof(chip));
  chip.chip_id = chip_id;
  RETURN_IF_ERROR(HEARTH_IOCTL(fd_.get(), KVM_GET_IRQCHIP, &chip).status());
  return chip;
}
absl::Status Vm::SetIrqchip(const kvm_irqchip& chip) const {
  return SetStruct(fd_.get(), KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP", chip);
}
absl::StatusOr<kvm_pit_state2> Vm::GetPit() const {
  return GetStruct<kvm_pit_state2>(fd_.get(), KVM_GET_PIT2, "KVM_GET_PIT2");
}
absl::Status Vm::SetPit(const kvm_pit_state2& pit) const {
  return SetStruct(fd_.get(), KVM_SET_PIT2, "KVM_SET_PIT2", pit);
}

absl::StatusOr<Vcpu> Vcpu::Create(const Kvm& kvm, const Vm& vm, uint32_t id) {
  ASSIGN_OR_RETURN(int fd, Ioctl(vm.fd(), KVM_CREATE_VCPU, "KVM_CREATE_VCPU", id));
  UniqueFd vcpu_fd(fd);
  ASSIGN_OR_RETURN(size_t mmap_size, kvm.VcpuMmapSize());
  ASSIGN_OR_RETURN(MmapRegion run, MmapRegion::FromFd(vcpu_fd.get(), 0, mmap_size,
                                                      {PROT_READ | PROT_WRITE, MAP_SHARED}));
  return Vcpu(id, std::move(vcpu_fd), std::move(run));
}

absl::StatusOr<uint32_t> Vcpu::Run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) return KVM_EXIT_INTR;
    return ErrnoStatus(absl::StrCat("KVM_RUN vcpu=", id_));
  }
  return run()->exit_reason;
}

absl::StatusOr<kvm_regs> Vcpu::GetRegs() const {
  return GetStruct<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS");
}
absl::Status Vcpu::SetRegs(const kvm_regs& regs) const {
  return SetStruct(fd_.get(), KVM_SET_REGS, "KVM_SET_REGS", regs);
}
absl::StatusOr<kvm_sregs> Vcpu::GetSregs() const {
  return GetStruct<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS");
}
absl::Status Vcpu::SetSregs(const kvm_sregs& sregs) const {
  return SetStruct(fd_.get(), KVM_SET_SREGS, "KVM_SET_SREGS", sregs);
}
absl::Status Vcpu::SetFpu(const kvm_fpu& fpu) const {
  return SetStruct(fd_.get(), KVM_SET_FPU, "KVM_SET_FPU", fpu);
}

absl::Status Vcpu::SetCpuid(const CpuidEntries& entries) const {
  FlexibleArray<CpuidHeader, kvm_cpuid_entry2> buffer(entries.size());
  buffer.header()->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buffer.entries(), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  return IoctlPtr(fd_.get(), kSetCpuid2, "KVM_SET_CPUID2", buffer.header()).status();
}

absl::StatusOr<std::vector<MsrEntry>> Vcpu::GetMsrsPrefix(
    absl::Span<const uint32_t> indices) const {
  FlexibleArray<MsrsHeader, kvm_msr_entry> buffer(indices.size());
  buffer.header()->nmsrs = static_cast<uint32_t>(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) buffer.entries()[i].index = indices[i];
  ASSIGN_OR_RETURN(int read, IoctlPtr(fd_.get(), kGetMsrs, "KVM_GET_MSRS", buffer.header()));
  std::vector<MsrEntry> msrs;
  for (size_t i = 0; i < static_cast<size_t>(read) && i < indices.size(); ++i) {
    msrs.push_back({buffer.entries()[i].index, buffer.entries()[i].data});
  }
  return msrs;
}

absl::Status Vcpu::SetMsrs(absl::Span<const MsrEntry> msrs) const {
  FlexibleArray<MsrsHeader, kvm_msr_entry> buffer(msrs.size());
  buffer.header()->nmsrs = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    buffer.entries()[i].index = msrs[i].index;
    buffer.entries()[i].data = msrs[i].data;
  }
  ASSIGN_OR_RETURN(int written, IoctlPtr(fd_.get(), kSetMsrs, "KVM_SET_MSRS", buffer.header()));
  if (static_cast<size_t>(written) != msrs.size()) {
    return absl::InternalError(
        absl::StrCat("KVM_SET_MSRS wrote ", written, " of ", msrs.size(), " MSRs; MSR 0x",
                     absl::Hex(msrs[static_cast<size_t>(written)].index), " was refused"));
  }
  return absl::OkStatus();
}

absl::StatusOr<kvm_lapic_state> Vcpu::GetLapic() const {
  return GetStruct<kvm_lapic_state>(fd_.get(), KVM_GET_LAPIC, "KVM_GET_LAPIC");
}
absl::Status Vcpu::SetLapic(const kvm_lapic_state& lapic) const {
  return SetStruct(fd_.get(), KVM_SET_LAPIC, "KVM_SET_LAPIC", lapic);
}
absl::StatusOr<kvm_mp_state> Vcpu::GetMpState() const {
  return GetStruct<kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE");
}
absl::Status Vcpu::SetMpState(const kvm_mp_state& state) const {
  return SetStruct(fd_.get(), KVM_SET_MP_STATE, "KVM_SET_MP_STATE", state);
}
absl::StatusOr<kvm_vcpu_events> Vcpu::GetVcpuEvents() const {
  return GetStruct<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
absl::Status Vcpu::SetVcpuEvents(const kvm_vcpu_events& events) const {
  return SetStruct(fd_.get(), KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", events);
}
absl::StatusOr<XsaveArea> Vcpu::GetXsave() const {
  return GetStruct<XsaveArea>(fd_.get(), kGetXsave, "KVM_GET_XSAVE");
}
absl::Status Vcpu::SetXsave(const XsaveArea& xsave) const {
  return SetStruct(fd_.get(), kSetXsave, "KVM_SET_XSAVE", xsave);
}
absl::StatusOr<kvm_xcrs> Vcpu::GetXcrs() const {
  return GetStruct<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS");
}
absl::Status Vcpu::SetXcrs(const kvm_xcrs& xcrs) const {
  return SetStruct(fd_.get(), KVM_SET_XCRS, "KVM_SET_XCRS", xcrs);
}
absl::StatusOr<kvm_debugregs> Vcpu::GetDebugRegs() const {
  return GetStruct<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}
absl::Status Vcpu::SetDebugRegs(const kvm_debugregs& regs) const {
  return SetStruct(fd_.get(), KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", regs);
}

}  // namespace hearth::kvm
