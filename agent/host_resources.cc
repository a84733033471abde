#include "agent/host_resources.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"

namespace hearth::agent {

namespace api = ::hearth::v1;

int DriveOpenFlags(const api::Drive& drive) {
  return drive.has_is_read_only() && drive.is_read_only() ? O_RDONLY : O_RDWR;
}

absl::Status CheckPath(const ImageRoots& roots, const std::string& field, const std::string& path,
                       int flags) {
  if (path.empty()) return absl::OkStatus();
  if ((flags & O_CREAT) == 0) return roots.OpenFile(field, path, flags).status();
  // A file the VM will create: checking it must not create it (a refused
  // or never-started VM leaves nothing behind). A missing one needs a
  // directory beneath a root; an existing one must open as it will at boot.
  absl::StatusOr<ImageRoots::Parent> parent = roots.OpenParent(field, path);
  if (!parent.ok()) return parent.status();
  struct stat st;
  if (::fstatat(parent->dir.get(), parent->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat(field, ": stat ", path));
  }
  return roots.OpenFile(field, path, flags & ~(O_CREAT | O_EXCL)).status();
}

absl::Status CheckTap(const std::string& field, const std::string& name) {
  struct stat st;
  if (::stat(absl::StrCat("/sys/class/net/", name, "/tun_flags").c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": there is no tap device named \"", name, "\" on the host"));
  }
  return absl::OkStatus();
}

absl::Status CheckVsockPath(const ImageRoots& roots, const std::string& field,
                            const std::string& path) {
  ASSIGN_OR_RETURN(ImageRoots::Parent parent, roots.OpenParent(field, path));
  struct stat st;
  if (::lstat(parent.ProcPath().c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", path, " exists and is not a socket"));
  }
  return absl::OkStatus();
}

absl::Status CheckConfigResources(const ImageRoots& roots, const api::VmConfig& config,
                                  const std::string& prefix) {
  auto field = [&prefix](const std::string& name) { return absl::StrCat(prefix, name); };
  if (config.has_boot_source()) {
    RETURN_IF_ERROR(CheckPath(roots, field("boot_source.kernel_image_path"),
                              config.boot_source().kernel_image_path(), O_RDONLY));
    RETURN_IF_ERROR(CheckPath(roots, field("boot_source.initrd_path"),
                              config.boot_source().initrd_path(), O_RDONLY));
  }
  for (int i = 0; i < config.drives_size(); ++i) {
    const api::Drive& drive = config.drives(i);
    RETURN_IF_ERROR(CheckPath(roots, field(absl::StrCat("drives[", i, "].path_on_host")),
                              drive.path_on_host(), DriveOpenFlags(drive)));
  }
  for (int i = 0; i < config.network_interfaces_size(); ++i) {
    RETURN_IF_ERROR(CheckTap(field(absl::StrCat("network_interfaces[", i, "].host_dev_name")),
                             config.network_interfaces(i).host_dev_name()));
  }
  if (config.has_vsock()) {
    RETURN_IF_ERROR(CheckVsockPath(roots, field("vsock.uds_path"), config.vsock().uds_path()));
  }
  if (config.has_serial()) {
    RETURN_IF_ERROR(CheckPath(roots, field("serial.serial_out_path"),
                              config.serial().serial_out_path(), kOutputFileFlags));
  }
  if (config.has_logger()) {
    RETURN_IF_ERROR(
        CheckPath(roots, field("logger.log_path"), config.logger().log_path(), kOutputFileFlags));
  }
  if (config.has_metrics()) {
    RETURN_IF_ERROR(CheckPath(roots, field("metrics.metrics_path"), config.metrics().metrics_path(),
                              kOutputFileFlags));
  }
  return absl::OkStatus();
}

}  // namespace hearth::agent
