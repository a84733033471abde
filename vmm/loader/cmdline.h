// The kernel command line: user boot_args plus what the VMM adds (virtio-mmio
// device announcements), validated against Linux x86's 2048-byte limit
// (COMMAND_LINE_SIZE, NUL included) before it is written to guest memory.
#ifndef HEARTH_VMM_LOADER_CMDLINE_H_
#define HEARTH_VMM_LOADER_CMDLINE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::loader {

class Cmdline {
 public:
  // `capacity` includes the terminating NUL.
  explicit Cmdline(size_t capacity);

  // Appends `text` (space-separated from what is there). Fails, leaving the
  // line unchanged, if `text` holds a NUL or control character or the line
  // would exceed the capacity.
  absl::Status Append(absl::string_view text);

  const std::string& str() const { return line_; }
  // Bytes the line takes in guest memory, NUL included.
  uint32_t size_with_nul() const { return static_cast<uint32_t>(line_.size() + 1); }

  // Writes the line and its NUL at `address`.
  absl::Status WriteTo(memory::GuestMemory* memory, uint64_t address) const;

 private:
  size_t capacity_;
  std::string line_;
};

}  // namespace hearth::loader

#endif  // HEARTH_VMM_LOADER_CMDLINE_H_
