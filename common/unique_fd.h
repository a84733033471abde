// UniqueFd: the one owner of a file descriptor. It closes the fd in its
// destructor, moves but never copies, and is the only place in Hearth that
// calls close(2) on a descriptor it owns.
#ifndef HEARTH_COMMON_UNIQUE_FD_H_
#define HEARTH_COMMON_UNIQUE_FD_H_

#include "absl/status/statusor.h"

namespace hearth {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Closes the current fd (if any) and takes ownership of `fd`.
  void Reset(int fd = -1);

  // A second, independently owned descriptor for the same open file
  // (F_DUPFD_CLOEXEC). Fails on an invalid or closed fd.
  absl::StatusOr<UniqueFd> Duplicate() const;

 private:
  int fd_ = -1;
};

}  // namespace hearth

#endif  // HEARTH_COMMON_UNIQUE_FD_H_
