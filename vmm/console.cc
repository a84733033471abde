#include "vmm/console.h"

#include <unistd.h>

#include <cerrno>

namespace hearth::vmm {

void BootTimer::Print(FILE* out) const {
  std::fprintf(out,
               "hearth-vmm boot-timer: vm_ready_us=%lld first_output_us=%lld "
               "exit_us=%lld guest_resident_kib=%llu\n",
               static_cast<long long>(vm_ready_us_.load()),
               static_cast<long long>(first_output_us_.load()),
               static_cast<long long>(exit_us_.load()),
               static_cast<unsigned long long>(guest_resident_bytes_.load() / 1024));
}

void FdConsoleOutput::Write(absl::Span<const uint8_t> bytes) {
  if (timer_ != nullptr) timer_->MarkFirstOutput();
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // reader gone: drop the output, keep the guest going
    done += static_cast<size_t>(n);
  }
}

}  // namespace hearth::vmm
