#include "common/file_io.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace hearth {

absl::Status PwriteAll(int fd, absl::Span<const uint8_t> data, uint64_t offset,
                       absl::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = RetryOnEintr([&] {
      return ::pwrite(fd, data.data() + done, data.size() - done,
                      static_cast<off_t>(offset + done));
    });
    if (n < 0) return ErrnoStatus(absl::StrCat(what, " at ", offset + done));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> PreadFull(int fd, absl::Span<uint8_t> into, uint64_t offset,
                                 absl::string_view what) {
  size_t done = 0;
  while (done < into.size()) {
    ssize_t n = RetryOnEintr([&] {
      return ::pread(fd, into.data() + done, into.size() - done, static_cast<off_t>(offset + done));
    });
    if (n < 0) return ErrnoStatus(absl::StrCat(what, " at ", offset + done));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace hearth
