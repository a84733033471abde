// Loading a Linux kernel (or anything that follows the same contract, like
// Hearth's test guest) into guest memory for a 64-bit entry:
//  * ELF vmlinux: every PT_LOAD segment at its physical address (p_paddr),
//    entered at e_entry in 64-bit mode. A PVH note, if present, is ignored:
//    it is there for QEMU.
//  * bzImage (boot protocol >= 2.12, XLF_KERNEL_64): the protected-mode
//    part at 1 MiB, entered at load address + 0x200; its setup header goes
//    into the zero page.
// Every offset, size and address read from the image is checked against the
// image and against guest RAM before use.
#ifndef HEARTH_VMM_LOADER_KERNEL_LOADER_H_
#define HEARTH_VMM_LOADER_KERNEL_LOADER_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "vmm/arch/x86_64/boot_params.h"
#include "vmm/loader/image_source.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::loader {

struct LoadedKernel {
  // Guest-physical 64-bit entry point.
  uint64_t entry = 0;
  // Guest-physical range the kernel occupies (including bss / init_size).
  uint64_t start = 0;
  uint64_t end = 0;
  // A bzImage's setup header; empty for ELF kernels.
  std::optional<x86::SetupHeader> setup_header;
  // The highest address an initrd may end at (setup header's
  // initrd_addr_max, or Linux's default for ELF kernels).
  uint64_t initrd_addr_max = 0;
};

// Detects the format and loads into fresh (zero-filled) guest memory.
// Errors name the image and what is wrong.
absl::StatusOr<LoadedKernel> LoadKernel(const ImageSource& image, memory::GuestMemory* memory);
absl::StatusOr<LoadedKernel> LoadElf(const ImageSource& image, memory::GuestMemory* memory);
absl::StatusOr<LoadedKernel> LoadBzImage(const ImageSource& image, memory::GuestMemory* memory);

struct LoadedInitrd {
  uint64_t address = 0;
  uint64_t size = 0;
};

// Places the initrd at the page-aligned top of low RAM, below
// kernel.initrd_addr_max and above the kernel.
absl::StatusOr<LoadedInitrd> LoadInitrd(const ImageSource& image, const LoadedKernel& kernel,
                                        memory::GuestMemory* memory);

}  // namespace hearth::loader

#endif  // HEARTH_VMM_LOADER_KERNEL_LOADER_H_
