#include "vmm/arch/x86_64/boot_params.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::x86 {

std::vector<E820Entry> BuildE820Map(uint64_t memory_size) {
  std::vector<E820Entry> map;
  auto ram = [&](uint64_t start, uint64_t end) {
    if (end > start) {
      map.push_back({start, end - start, static_cast<uint32_t>(E820Type::kRam)});
    }
  };
  uint64_t low_end = std::min(memory_size, layout::kMmioHoleStart);
  // [0, EBDA) is conventional memory; [EBDA, 1 MiB) holds the MP table and
  // the legacy ROM/VGA holes, so it is left out of the map.
  ram(0, std::min(low_end, layout::kLowRamEnd));
  ram(layout::kHighMemStart, low_end);
  if (memory_size > layout::kMmioHoleStart) {
    ram(layout::kHighRamStart, layout::kHighRamStart + memory_size - layout::kMmioHoleStart);
  }
  return map;
}

absl::StatusOr<BootParams> BuildBootParams(const BootParamsInput& input) {
  if (input.e820.size() > kE820MaxEntries) {
    return absl::InvalidArgumentError(
        absl::StrCat("e820 map has ", input.e820.size(), " entries, max ", kE820MaxEntries));
  }
  if (input.cmdline_address > UINT32_MAX || input.initrd_address > UINT32_MAX ||
      input.initrd_size > UINT32_MAX) {
    return absl::InvalidArgumentError("command line and initrd must lie below 4 GiB");
  }
  BootParams params;
  std::memset(&params, 0, sizeof(params));
  if (input.kernel_header.has_value()) {
    params.hdr = *input.kernel_header;
  } else {
    params.hdr.boot_flag = kBootFlagMagic;
    params.hdr.header = kHdrSMagic;
    params.hdr.kernel_alignment = 0x1000000;
  }
  params.hdr.type_of_loader = kTypeOfLoaderUndefined;
  params.hdr.cmd_line_ptr = static_cast<uint32_t>(input.cmdline_address);
  params.hdr.cmdline_size = input.cmdline_size;
  if (input.initrd_size > 0) {
    params.hdr.ramdisk_image = static_cast<uint32_t>(input.initrd_address);
    params.hdr.ramdisk_size = static_cast<uint32_t>(input.initrd_size);
  }
  params.e820_entries = static_cast<uint8_t>(input.e820.size());
  std::copy(input.e820.begin(), input.e820.end(), params.e820_table);
  return params;
}

}  // namespace hearth::x86
