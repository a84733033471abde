#include "agent/boot_resources.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/host_resources.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace control = ::hearth::vmm::v1;

absl::StatusOr<UniqueFd> OpenTap(const std::string& name, const std::string& field) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat(field, ": open /dev/net/tun"));
  UniqueFd tun(fd);
  struct ifreq request = {};
  std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tun.get(), TUNSETIFF, &request) < 0) {
    return ErrnoStatus(absl::StrCat(field, ": attaching to tap ", name));
  }
  return tun;
}

absl::StatusOr<std::pair<UniqueFd, UniqueFd>> ConsolePair() {
  // Both ends non-blocking: the agent reads on its event loop, and so does
  // the VMM (its output goes with MSG_DONTWAIT either way).
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) {
    return ErrnoStatus("console socketpair");
  }
  return std::make_pair(UniqueFd(pair[0]), UniqueFd(pair[1]));
}

void RemoveVsockSocket(const ImageRoots& roots, const std::string& path, uint64_t dev,
                       uint64_t ino) {
  absl::StatusOr<ImageRoots::Parent> parent = roots.OpenParent("vsock.uds_path", path);
  if (!parent.ok()) return;  // its directory is gone or moved out of the roots
  struct stat st;
  if (::fstatat(parent->dir.get(), parent->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 ||
      !S_ISSOCK(st.st_mode) || st.st_dev != dev || st.st_ino != ino) {
    return;  // not the socket the agent bound: never unlinked
  }
  // Between the check and the unlink the directory entry could only be
  // swapped by someone with write access to the pinned directory; the
  // unlink acts on that directory, never on a path resolved again.
  if (::unlinkat(parent->dir.get(), parent->name.c_str(), 0) < 0 && errno != ENOENT) {
    LOG(WARNING) << "vsock.uds_path: removing " << path << ": " << std::strerror(errno);
  }
}

absl::StatusOr<BootResources> OpenBootResources(const ImageRoots& roots, const api::VmConfig& spec,
                                                bool boot, control::FdMap* map) {
  BootResources out;
  auto add = [&](UniqueFd fd) {
    out.fds.push_back(std::move(fd));
    return static_cast<int32_t>(out.fds.size() - 1);
  };
  if (boot) {
    ASSIGN_OR_RETURN(UniqueFd kernel,
                     roots.OpenFile("boot_source.kernel_image_path",
                                    spec.boot_source().kernel_image_path(), O_RDONLY));
    map->set_kernel(add(std::move(kernel)));
  }
  if (boot && !spec.boot_source().initrd_path().empty()) {
    ASSIGN_OR_RETURN(UniqueFd initrd, roots.OpenFile("boot_source.initrd_path",
                                                     spec.boot_source().initrd_path(), O_RDONLY));
    map->set_initrd(add(std::move(initrd)));
  }
  for (int i = 0; i < spec.drives_size(); ++i) {
    const api::Drive& drive = spec.drives(i);
    ASSIGN_OR_RETURN(UniqueFd file, roots.OpenFile(absl::StrCat("drives[", i, "].path_on_host"),
                                                   drive.path_on_host(), DriveOpenFlags(drive)));
    (*map->mutable_drives())[drive.drive_id()] = add(std::move(file));
  }
  for (int i = 0; i < spec.network_interfaces_size(); ++i) {
    const api::NetworkInterface& iface = spec.network_interfaces(i);
    ASSIGN_OR_RETURN(
        UniqueFd tap,
        OpenTap(iface.host_dev_name(), absl::StrCat("network_interfaces[", i, "].host_dev_name")));
    (*map->mutable_taps())[iface.iface_id()] = add(std::move(tap));
  }
  if (spec.has_vsock()) {
    ASSIGN_OR_RETURN(ImageRoots::Parent parent,
                     roots.OpenParent("vsock.uds_path", spec.vsock().uds_path()));
    std::string proc_path = parent.ProcPath();
    struct stat st;
    if (::fstatat(parent.dir.get(), parent.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      // A socket nobody listens on is a leftover and is replaced; a live one
      // belongs to someone else (another VM); anything else is not ours.
      if (!S_ISSOCK(st.st_mode)) {
        return absl::InvalidArgumentError(absl::StrCat("vsock.uds_path: ", spec.vsock().uds_path(),
                                                       " exists and is not a socket"));
      }
      UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      ASSIGN_OR_RETURN(sockaddr_un address, UnixSocketAddress(proc_path, "vsock.uds_path"));
      if (probe.valid() &&
          ::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "vsock.uds_path: ", spec.vsock().uds_path(), " is in use (something listens on it)"));
      }
      if (::unlinkat(parent.dir.get(), parent.name.c_str(), 0) < 0) {
        return ErrnoStatus(
            absl::StrCat("vsock.uds_path: removing the stale socket ", spec.vsock().uds_path()));
      }
    }
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSIGN_OR_RETURN(sockaddr_un address, UnixSocketAddress(proc_path, "vsock.uds_path"));
    if (!listener.valid() ||
        ::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
        ::listen(listener.get(), 64) < 0) {
      return ErrnoStatus(absl::StrCat("vsock.uds_path: listening on ", spec.vsock().uds_path()));
    }
    if (::fstatat(parent.dir.get(), parent.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      return ErrnoStatus(absl::StrCat("vsock.uds_path: stat ", spec.vsock().uds_path()));
    }
    out.vsock_dev = st.st_dev;
    out.vsock_ino = st.st_ino;
    map->set_vsock_listener(add(std::move(listener)));
  }
  if (spec.has_metrics()) {
    ASSIGN_OR_RETURN(
        UniqueFd metrics,
        roots.OpenFile("metrics.metrics_path", spec.metrics().metrics_path(), kOutputFileFlags));
    map->set_metrics(add(std::move(metrics)));
  }
  if (spec.has_logger() && !spec.logger().log_path().empty()) {
    ASSIGN_OR_RETURN(UniqueFd log,
                     roots.OpenFile("logger.log_path", spec.logger().log_path(), kOutputFileFlags));
    out.log_reader.Reset(
        ::open(absl::StrCat("/proc/self/fd/", log.get()).c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!out.log_reader.valid()) return ErrnoStatus("logger.log_path: reopening for reading");
    map->set_log(add(std::move(log)));
  }
  if (spec.has_serial() && !spec.serial().serial_out_path().empty()) {
    ASSIGN_OR_RETURN(out.serial_out,
                     roots.OpenFile("serial.serial_out_path", spec.serial().serial_out_path(),
                                    kOutputFileFlags));
  }
  ASSIGN_OR_RETURN(auto console, ConsolePair());
  out.console = std::move(console.first);
  map->set_console(add(std::move(console.second)));
  return out;
}

}  // namespace hearth::agent
