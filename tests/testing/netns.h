// A private network namespace with a tap device in it, for tests that run
// a VMM's virtio-net against a real tap. Needs root; everything is removed
// in the destructor.
#ifndef HEARTH_TESTS_TESTING_NETNS_H_
#define HEARTH_TESTS_TESTING_NETNS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hearth::testing {

class TapNamespace {
 public:
  // Creates namespace `name` holding tap `tap` (up, with IFF_VNET_HDR).
  static absl::StatusOr<TapNamespace> Create(const std::string& name, const std::string& tap);
  TapNamespace(TapNamespace&& other) noexcept;
  TapNamespace& operator=(TapNamespace&&) = delete;
  ~TapNamespace();

  // argv prefix that runs a command inside the namespace.
  std::vector<std::string> ExecPrefix() const;
  // Moves the calling thread into the namespace (for sockets on the tap).
  absl::Status EnterOnThisThread() const;
  const std::string& name() const { return name_; }
  const std::string& tap() const { return tap_; }

 private:
  TapNamespace(std::string name, std::string tap) : name_(std::move(name)), tap_(std::move(tap)) {}
  std::string name_;
  std::string tap_;
};

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_NETNS_H_
