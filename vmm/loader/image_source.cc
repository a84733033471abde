#include "vmm/loader/image_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/file_io.h"
#include "common/status_macros.h"

namespace hearth::loader {

absl::Status CheckImageRange(const ImageSource& image, uint64_t offset, uint64_t length) {
  if (offset > image.size() || length > image.size() - offset) {
    return absl::OutOfRangeError(absl::StrCat(image.name(), " image is truncated: needs bytes [",
                                              offset, ", ", offset + length, ") but has ",
                                              image.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<FdImageSource> FdImageSource::Create(UniqueFd fd, std::string name) {
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) {
    return ErrnoStatus(absl::StrCat("fstat ", name));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is not a regular file"));
  }
  return FdImageSource(std::move(fd), static_cast<uint64_t>(st.st_size), std::move(name));
}

absl::Status FdImageSource::ReadAt(uint64_t offset, absl::Span<uint8_t> destination) const {
  RETURN_IF_ERROR(CheckImageRange(*this, offset, destination.size()));
  ASSIGN_OR_RETURN(size_t got,
                   PreadFull(fd_.get(), destination, offset, absl::StrCat("read ", name_)));
  if (got < destination.size()) {
    return absl::DataLossError(absl::StrCat(name_, " shrank while being read"));
  }
  return absl::OkStatus();
}

absl::Status BufferImageSource::ReadAt(uint64_t offset, absl::Span<uint8_t> destination) const {
  RETURN_IF_ERROR(CheckImageRange(*this, offset, destination.size()));
  std::memcpy(destination.data(), bytes_.data() + offset, destination.size());
  return absl::OkStatus();
}

}  // namespace hearth::loader
