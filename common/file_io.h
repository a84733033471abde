// Whole-buffer positional reads and writes: pread(2)/pwrite(2) retried on
// EINTR and on short transfers, with errors that say what was being done.
#ifndef HEARTH_COMMON_FILE_IO_H_
#define HEARTH_COMMON_FILE_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hearth {

// Writes all of `data` to `fd` at `offset`. An error reads "<what> at
// <offset>: <strerror>".
absl::Status PwriteAll(int fd, absl::Span<const uint8_t> data, uint64_t offset,
                       absl::string_view what);

// The same for text (or any bytes held in a string).
absl::Status PwriteAll(int fd, absl::string_view data, uint64_t offset, absl::string_view what);

// Reads from `fd` at `offset` until `into` is full or the file ends;
// returns how many bytes were read (fewer than into.size() only at the end
// of the file).
absl::StatusOr<size_t> PreadFull(int fd, absl::Span<uint8_t> into, uint64_t offset,
                                 absl::string_view what);

// The last `max` bytes of the file `fd` (fewer if it is shorter; empty if
// `fd` is -1 or cannot be read): for the tail of a log.
std::string ReadTail(int fd, size_t max);

}  // namespace hearth

#endif  // HEARTH_COMMON_FILE_IO_H_
