// ImageSource: random-access bytes of a kernel or initrd image. Loaders read
// only through it, so the same parsing code runs on an fd passed in by the
// agent, on a file opened in standalone mode, and on an in-memory buffer in
// unit tests and fuzzers.
#ifndef HEARTH_VMM_LOADER_IMAGE_SOURCE_H_
#define HEARTH_VMM_LOADER_IMAGE_SOURCE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/unique_fd.h"

namespace hearth::loader {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly `destination.size()` bytes at `offset`; a range that
  // leaves the image fails with OUT_OF_RANGE.
  virtual absl::Status ReadAt(uint64_t offset, absl::Span<uint8_t> destination) const = 0;
  // A name for error messages ("kernel", "initrd").
  virtual const std::string& name() const = 0;
};

class FdImageSource : public ImageSource {
 public:
  // Takes `fd` (a regular file) and reads its size once.
  static absl::StatusOr<FdImageSource> Create(UniqueFd fd, std::string name);

  uint64_t size() const override { return size_; }
  absl::Status ReadAt(uint64_t offset, absl::Span<uint8_t> destination) const override;
  const std::string& name() const override { return name_; }

 private:
  FdImageSource(UniqueFd fd, uint64_t size, std::string name)
      : fd_(std::move(fd)), size_(size), name_(std::move(name)) {}
  UniqueFd fd_;
  uint64_t size_;
  std::string name_;
};

class BufferImageSource : public ImageSource {
 public:
  BufferImageSource(std::string bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  absl::Status ReadAt(uint64_t offset, absl::Span<uint8_t> destination) const override;
  const std::string& name() const override { return name_; }

 private:
  std::string bytes_;
  std::string name_;
};

// Checks that [offset, offset + length) lies inside an image of `size`.
absl::Status CheckImageRange(const ImageSource& image, uint64_t offset, uint64_t length);

}  // namespace hearth::loader

#endif  // HEARTH_VMM_LOADER_IMAGE_SOURCE_H_
