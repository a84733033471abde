#include "vmm/loader/kernel_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::loader {
namespace {

constexpr uint16_t kMinBootProtocol = 0x020c;  // 2.12: 64-bit entry, xloadflags
constexpr uint64_t kBzImage64BitEntryOffset = 0x200;
constexpr size_t kMaxProgramHeaders = 64;

template <typename T>
absl::StatusOr<T> ReadStruct(const ImageSource& image, uint64_t offset) {
  T value;
  RETURN_IF_ERROR(
      image.ReadAt(offset, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value), sizeof(T))));
  return value;
}

absl::Status Invalid(const ImageSource& image, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(image.name(), ": ", what));
}

// Copies [offset, offset + length) of the image to guest address `address`.
absl::Status CopyToGuest(const ImageSource& image, uint64_t offset, uint64_t length,
                         uint64_t address, memory::GuestMemory* memory) {
  ASSIGN_OR_RETURN(absl::Span<uint8_t> destination, memory->Slice(address, length));
  RETURN_IF_ERROR(image.ReadAt(offset, destination));
  memory->MarkDirty(address, length);
  return absl::OkStatus();
}

absl::Status CheckInRam(const ImageSource& image, const char* what, uint64_t address,
                        uint64_t length, const memory::GuestMemory& memory) {
  if (address < x86::layout::kHighMemStart) {
    return Invalid(image, absl::StrCat(what, " at 0x", absl::Hex(address),
                                       " is below 1 MiB, where the boot "
                                       "structures live"));
  }
  if (!memory.Contains(address, length)) {
    return Invalid(image, absl::StrCat(what, " [0x", absl::Hex(address), ", 0x",
                                       absl::Hex(address + length), ") does not fit in guest RAM (",
                                       memory.size() / x86::layout::kMiB, " MiB)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadedKernel> LoadKernel(const ImageSource& image, memory::GuestMemory* memory) {
  char magic[SELFMAG] = {};
  if (image.size() >= SELFMAG) {
    RETURN_IF_ERROR(image.ReadAt(0, absl::MakeSpan(reinterpret_cast<uint8_t*>(magic), SELFMAG)));
  }
  if (std::memcmp(magic, ELFMAG, SELFMAG) == 0) return LoadElf(image, memory);
  return LoadBzImage(image, memory);
}

absl::StatusOr<LoadedKernel> LoadElf(const ImageSource& image, memory::GuestMemory* memory) {
  ASSIGN_OR_RETURN(Elf64_Ehdr ehdr, ReadStruct<Elf64_Ehdr>(image, 0));
  if (std::memcmp(ehdr.e_ident, ELFMAG, SELFMAG) != 0) {
    return Invalid(image, "not an ELF file");
  }
  if (ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_ident[EI_DATA] != ELFDATA2LSB ||
      ehdr.e_machine != EM_X86_64) {
    return Invalid(image, "not a little-endian x86_64 ELF64 file");
  }
  if (ehdr.e_phentsize != sizeof(Elf64_Phdr) || ehdr.e_phnum == 0 ||
      ehdr.e_phnum > kMaxProgramHeaders) {
    return Invalid(image, absl::StrCat("bad program header table (", ehdr.e_phnum, " entries of ",
                                       ehdr.e_phentsize, " bytes)"));
  }
  RETURN_IF_ERROR(
      CheckImageRange(image, ehdr.e_phoff, uint64_t{ehdr.e_phnum} * sizeof(Elf64_Phdr)));
  std::vector<Elf64_Phdr> loads;
  for (uint16_t i = 0; i < ehdr.e_phnum; ++i) {
    ASSIGN_OR_RETURN(Elf64_Phdr phdr, ReadStruct<Elf64_Phdr>(
                                          image, ehdr.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr)));
    if (phdr.p_type != PT_LOAD || phdr.p_memsz == 0) continue;
    if (phdr.p_filesz > phdr.p_memsz) {
      return Invalid(image, absl::StrCat("segment ", i, " has p_filesz > p_memsz"));
    }
    RETURN_IF_ERROR(CheckImageRange(image, phdr.p_offset, phdr.p_filesz));
    RETURN_IF_ERROR(CheckInRam(image, absl::StrCat("segment ", i).c_str(), phdr.p_paddr,
                               phdr.p_memsz, *memory));
    loads.push_back(phdr);
  }
  if (loads.empty()) return Invalid(image, "no PT_LOAD segments");
  std::sort(loads.begin(), loads.end(),
            [](const Elf64_Phdr& a, const Elf64_Phdr& b) { return a.p_paddr < b.p_paddr; });
  for (size_t i = 1; i < loads.size(); ++i) {
    if (loads[i].p_paddr < loads[i - 1].p_paddr + loads[i - 1].p_memsz) {
      return Invalid(image, absl::StrCat("PT_LOAD segments at 0x", absl::Hex(loads[i - 1].p_paddr),
                                         " and 0x", absl::Hex(loads[i].p_paddr), " overlap"));
    }
  }
  LoadedKernel kernel;
  kernel.start = loads.front().p_paddr;
  kernel.end = loads.back().p_paddr + loads.back().p_memsz;
  kernel.entry = ehdr.e_entry;
  kernel.initrd_addr_max = x86::layout::kDefaultInitrdAddrMax;
  bool entry_loaded = false;
  for (const Elf64_Phdr& phdr : loads) {
    entry_loaded |= ehdr.e_entry >= phdr.p_paddr && ehdr.e_entry < phdr.p_paddr + phdr.p_memsz;
  }
  if (!entry_loaded) {
    return Invalid(image, absl::StrCat("entry point 0x", absl::Hex(ehdr.e_entry),
                                       " is outside every loaded segment"));
  }
  for (const Elf64_Phdr& phdr : loads) {
    RETURN_IF_ERROR(CopyToGuest(image, phdr.p_offset, phdr.p_filesz, phdr.p_paddr, memory));
    // bss (p_memsz beyond p_filesz) is not written: guest RAM is fresh,
    // zero-filled anonymous memory, and leaving those pages untouched keeps
    // them out of the VMM's RSS until the guest uses them.
  }
  return kernel;
}

absl::StatusOr<LoadedKernel> LoadBzImage(const ImageSource& image, memory::GuestMemory* memory) {
  if (image.size() < x86::kSetupHeaderOffset + sizeof(x86::SetupHeader)) {
    return Invalid(image, "neither an ELF file nor a bzImage (too small)");
  }
  ASSIGN_OR_RETURN(x86::SetupHeader header,
                   ReadStruct<x86::SetupHeader>(image, x86::kSetupHeaderOffset));
  if (header.boot_flag != x86::kBootFlagMagic || header.header != x86::kHdrSMagic) {
    return Invalid(image, "neither an ELF file nor a bzImage (no HdrS header)");
  }
  if (header.version < kMinBootProtocol) {
    return Invalid(image, absl::StrCat("boot protocol ", header.version >> 8, ".",
                                       header.version & 0xff, " is too old; Hearth needs 2.12+"));
  }
  if (!(header.xloadflags & x86::kXlfKernel64) || !(header.loadflags & x86::kLoadedHigh)) {
    return Invalid(image, "bzImage has no 64-bit entry point (XLF_KERNEL_64)");
  }
  uint64_t setup_sects = header.setup_sects == 0 ? 4 : header.setup_sects;
  uint64_t payload_offset = (setup_sects + 1) * 512;
  if (payload_offset >= image.size()) {
    return Invalid(image, "bzImage has no protected-mode kernel after setup");
  }
  uint64_t payload_size = image.size() - payload_offset;
  LoadedKernel kernel;
  kernel.start = x86::layout::kHighMemStart;
  // The kernel decompresses in place and needs init_size bytes from here.
  kernel.end = kernel.start + std::max<uint64_t>(payload_size, header.init_size);
  RETURN_IF_ERROR(CheckInRam(image, "kernel", kernel.start, kernel.end - kernel.start, *memory));
  // The 64-bit entry point must lie inside what the image claims as kernel.
  if (kBzImage64BitEntryOffset >= kernel.end - kernel.start) {
    return Invalid(image,
                   absl::StrCat("bzImage of ", payload_size, " bytes (init_size ", header.init_size,
                                ") ends before its 64-bit entry point at +0x200"));
  }
  RETURN_IF_ERROR(CopyToGuest(image, payload_offset, payload_size, kernel.start, memory));
  kernel.entry = kernel.start + kBzImage64BitEntryOffset;
  kernel.setup_header = header;
  kernel.initrd_addr_max = header.initrd_addr_max;
  return kernel;
}

absl::StatusOr<LoadedInitrd> LoadInitrd(const ImageSource& image, const LoadedKernel& kernel,
                                        memory::GuestMemory* memory) {
  if (image.size() == 0) return Invalid(image, "initrd is empty");
  uint64_t low_ram_end = std::min(memory->size(), x86::layout::kMmioHoleStart);
  uint64_t top = std::min(low_ram_end, kernel.initrd_addr_max + 1);
  uint64_t address = top >= image.size() ? (top - image.size()) & ~(x86::layout::kPageSize - 1) : 0;
  if (address < kernel.end) {
    return Invalid(image, absl::StrCat("initrd of ", image.size(),
                                       " bytes does not fit between the kernel "
                                       "(ends at 0x",
                                       absl::Hex(kernel.end), ") and 0x", absl::Hex(top)));
  }
  RETURN_IF_ERROR(CopyToGuest(image, 0, image.size(), address, memory));
  return LoadedInitrd{address, image.size()};
}

}  // namespace hearth::loader
