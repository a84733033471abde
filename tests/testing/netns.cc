#include "tests/testing/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {
namespace {

absl::Status Run(const std::vector<std::string>& argv) {
  absl::StatusOr<ProcessResult> r = RunProcess(argv, absl::Seconds(30));
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " ", argv[1], " failed: ", r->err));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TapNamespace> TapNamespace::Create(const std::string& name, const std::string& tap) {
  (void)Run({"/usr/sbin/ip", "netns", "del", name});  // left over by a crash
  absl::Status status = Run({"/usr/sbin/ip", "netns", "add", name});
  if (!status.ok()) return status;
  TapNamespace ns(name, tap);
  status =
      Run({"/usr/sbin/ip", "-n", name, "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr"});
  if (status.ok()) status = Run({"/usr/sbin/ip", "-n", name, "link", "set", tap, "up"});
  if (status.ok()) status = Run({"/usr/sbin/ip", "-n", name, "link", "set", "lo", "up"});
  if (!status.ok()) return status;
  return ns;
}

TapNamespace::TapNamespace(TapNamespace&& other) noexcept
    : name_(std::move(other.name_)), tap_(std::move(other.tap_)) {
  other.name_.clear();
}

TapNamespace::~TapNamespace() {
  if (!name_.empty()) (void)Run({"/usr/sbin/ip", "netns", "del", name_});
}

std::vector<std::string> TapNamespace::ExecPrefix() const {
  return {"/usr/sbin/ip", "netns", "exec", name_};
}

absl::Status TapNamespace::EnterOnThisThread() const {
  std::string path = absl::StrCat("/var/run/netns/", name_);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path));
  int rc = ::setns(fd, CLONE_NEWNET);
  ::close(fd);
  if (rc < 0) return absl::InternalError(absl::StrCat("setns ", path));
  return absl::OkStatus();
}

}  // namespace hearth::testing
