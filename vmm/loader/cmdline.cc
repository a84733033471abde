#include "vmm/loader/cmdline.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hearth::loader {

Cmdline::Cmdline(size_t capacity) : capacity_(capacity) {}

absl::Status Cmdline::Append(absl::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 && c != '\t') {
      return absl::InvalidArgumentError(
          absl::StrCat("boot_args: control character 0x", absl::Hex(c), " at offset ", i));
    }
  }
  size_t separator = line_.empty() || text.empty() ? 0 : 1;
  size_t needed = line_.size() + separator + text.size() + 1;
  if (needed > capacity_) {
    return absl::InvalidArgumentError(absl::StrCat("boot_args: the kernel command line would be ",
                                                   needed - 1, " bytes; the limit is ",
                                                   capacity_ - 1));
  }
  if (separator) line_.push_back(' ');
  line_.append(text.data(), text.size());
  return absl::OkStatus();
}

absl::Status Cmdline::WriteTo(memory::GuestMemory* memory, uint64_t address) const {
  return memory->Write(address, line_.c_str(), line_.size() + 1);
}

}  // namespace hearth::loader
