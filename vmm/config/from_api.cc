#include "vmm/config/from_api.h"

#include <fcntl.h>

#include "absl/strings/str_cat.h"
#include "api/validate.h"
#include "common/errno_status.h"
#include "common/status_macros.h"

namespace hearth::vmm {
namespace {

absl::StatusOr<UniqueFd> OpenFile(const std::string& path, int flags,
                                  absl::string_view field) {
  int fd = RetryOnEintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC); });
  if (fd < 0) return ErrnoStatus(absl::StrCat(field, ": open ", path));
  return UniqueFd(fd);
}

}  // namespace

absl::StatusOr<UniqueFd> PathOpener::OpenKernel(const v1::BootSource& boot) {
  return OpenFile(boot.kernel_image_path(), O_RDONLY,
                  "boot_source.kernel_image_path");
}

absl::StatusOr<UniqueFd> PathOpener::OpenInitrd(const v1::BootSource& boot) {
  return OpenFile(boot.initrd_path(), O_RDONLY, "boot_source.initrd_path");
}

absl::StatusOr<UniqueFd> PathOpener::OpenDrive(const v1::Drive& drive) {
  bool read_only = drive.has_is_read_only() && drive.is_read_only();
  return OpenFile(drive.path_on_host(), read_only ? O_RDONLY : O_RDWR,
                  absl::StrCat("drives[", drive.drive_id(), "].path_on_host"));
}

absl::StatusOr<UniqueFd> PathOpener::OpenTap(const v1::NetworkInterface& iface) {
  return absl::UnimplementedError(absl::StrCat(
      "network_interfaces[", iface.iface_id(),
      "]: virtio-net is not implemented in this build"));
}

absl::Status PathOpener::OpenVsock(const v1::Vsock&, VsockConfig*) {
  return absl::UnimplementedError("vsock: not implemented in this build");
}

absl::StatusOr<VmmConfig> VmmConfigFromApi(const v1::VmConfig& api,
                                           ResourceOpener* opener) {
  RETURN_IF_ERROR(api::ValidateVmConfig(api, /*require_boot_source=*/true));
  // Devices that later milestones add; refused by name until then.
  if (api.drives_size() > 0) {
    return absl::UnimplementedError("drives: virtio-blk is not implemented in this build");
  }
  if (api.network_interfaces_size() > 0) {
    return absl::UnimplementedError(
        "network-interfaces: virtio-net is not implemented in this build");
  }
  if (api.has_vsock()) {
    return absl::UnimplementedError("vsock: virtio-vsock is not implemented in this build");
  }
  if (api.has_entropy()) {
    return absl::UnimplementedError("entropy: virtio-rng is not implemented in this build");
  }
  if (api.has_balloon()) {
    return absl::UnimplementedError("balloon: virtio-balloon is not implemented in this build");
  }
  if (api.has_mmds_config() || api.has_mmds()) {
    return absl::UnimplementedError("mmds-config: MMDS is not implemented by Hearth yet");
  }
  VmmConfig config;
  const v1::MachineConfig& machine = api.machine_config();
  config.machine.vcpu_count = api::VcpuCount(machine);
  config.machine.mem_size_mib = api::MemSizeMib(machine);
  config.machine.smt = machine.smt();
  config.machine.track_dirty_pages = machine.track_dirty_pages();
  config.machine.huge_pages = api::HugePages2M(machine);
  const v1::BootSource& boot = api.boot_source();
  ASSIGN_OR_RETURN(config.boot.kernel, opener->OpenKernel(boot));
  if (!boot.initrd_path().empty()) {
    ASSIGN_OR_RETURN(config.boot.initrd, opener->OpenInitrd(boot));
  }
  config.boot.boot_args = boot.has_boot_args() ? boot.boot_args() : kDefaultBootArgs;
  return config;
}

}  // namespace hearth::vmm
