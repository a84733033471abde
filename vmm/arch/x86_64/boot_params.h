// The Linux x86 "zero page" (struct boot_params) and its setup header, laid
// out byte for byte as in Documentation/arch/x86/boot.rst and
// arch/x86/include/uapi/asm/bootparam.h, plus the builder that fills it in
// for a 64-bit boot: e820 map, command line, initrd.
#ifndef HEARTH_VMM_ARCH_X86_64_BOOT_PARAMS_H_
#define HEARTH_VMM_ARCH_X86_64_BOOT_PARAMS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"

namespace hearth::x86 {

// boot.rst "The real-mode kernel header", at offset 0x1f1 of the zero page
// and of a bzImage file.
struct __attribute__((packed)) SetupHeader {
  uint8_t setup_sects;
  uint16_t root_flags;
  uint32_t syssize;
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;  // 0xaa55
  uint16_t jump;
  uint32_t header;  // "HdrS"
  uint16_t version;
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;
  uint8_t loadflags;
  uint16_t setup_move_size;
  uint32_t code32_start;
  uint32_t ramdisk_image;
  uint32_t ramdisk_size;
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;
  uint32_t initrd_addr_max;
  uint32_t kernel_alignment;
  uint8_t relocatable_kernel;
  uint8_t min_alignment;
  uint16_t xloadflags;
  uint32_t cmdline_size;
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;
  uint32_t init_size;
  uint32_t handover_offset;
  uint32_t kernel_info_offset;
};
static_assert(sizeof(SetupHeader) == 0x26c - 0x1f1);

inline constexpr uint32_t kSetupHeaderOffset = 0x1f1;
inline constexpr uint16_t kBootFlagMagic = 0xaa55;
inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
inline constexpr uint8_t kLoadedHigh = 0x01;        // loadflags
inline constexpr uint16_t kXlfKernel64 = 0x01;      // xloadflags
// "Undefined" boot loader id, for loaders without an assigned id.
inline constexpr uint8_t kTypeOfLoaderUndefined = 0xff;

enum class E820Type : uint32_t { kRam = 1, kReserved = 2 };

struct __attribute__((packed)) E820Entry {
  uint64_t address;
  uint64_t size;
  uint32_t type;
};
static_assert(sizeof(E820Entry) == 20);
inline constexpr size_t kE820MaxEntries = 128;

struct __attribute__((packed)) BootParams {
  uint8_t pad0[0x0c0];
  uint32_t ext_ramdisk_image;  // 0x0c0
  uint32_t ext_ramdisk_size;   // 0x0c4
  uint32_t ext_cmd_line_ptr;   // 0x0c8
  uint8_t pad1[0x1e8 - 0x0cc];
  uint8_t e820_entries;  // 0x1e8
  uint8_t pad2[kSetupHeaderOffset - 0x1e9];
  SetupHeader hdr;  // 0x1f1
  uint8_t pad3[0x2d0 - 0x26c];
  E820Entry e820_table[kE820MaxEntries];  // 0x2d0
  uint8_t pad4[4096 - 0x2d0 - kE820MaxEntries * sizeof(E820Entry)];
};
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, hdr) == 0x1f1);
static_assert(offsetof(BootParams, hdr.cmd_line_ptr) == 0x228);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);

// The e820 map for `memory_size` bytes of RAM laid out by GuestMemory.
std::vector<E820Entry> BuildE820Map(uint64_t memory_size);

struct BootParamsInput {
  // A bzImage's setup header (copied in, as boot.rst asks); ELF kernels
  // have none and get a minimal one.
  std::optional<SetupHeader> kernel_header;
  uint64_t cmdline_address = 0;
  // Length including the terminating NUL.
  uint32_t cmdline_size = 0;
  uint64_t initrd_address = 0;
  uint64_t initrd_size = 0;
  std::vector<E820Entry> e820;
};

absl::StatusOr<BootParams> BuildBootParams(const BootParamsInput& input);

}  // namespace hearth::x86

#endif  // HEARTH_VMM_ARCH_X86_64_BOOT_PARAMS_H_
