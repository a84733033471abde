#include "common/file_io.h"

#include <sys/stat.h>
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

absl::Status PwriteAll(int fd, absl::string_view data, uint64_t offset, absl::string_view what) {
  return PwriteAll(fd,
                   absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(data.data()), data.size()),
                   offset, what);
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

std::string ReadTail(int fd, size_t max) {
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) < 0 || st.st_size <= 0) return "";
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t from = size > max ? size - max : 0;
  std::string tail(static_cast<size_t>(size - from), '\0');
  absl::StatusOr<size_t> read = PreadFull(
      fd, absl::MakeSpan(reinterpret_cast<uint8_t*>(tail.data()), tail.size()), from, "tail");
  tail.resize(read.ok() ? *read : 0);
  return tail;
}

}  // namespace hearth
