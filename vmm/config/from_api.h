// From the API's VmConfig (validated with api::ValidateVmConfig) to the
// VMM's VmmConfig: defaults applied, strings parsed, and every host resource
// turned into an open fd by a ResourceOpener — which opens paths in
// standalone mode and takes the fds the agent sent over the control channel
// in agent mode, so that a jailed VMM never resolves a host path.
#ifndef HEARTH_VMM_CONFIG_FROM_API_H_
#define HEARTH_VMM_CONFIG_FROM_API_H_

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "hearth/v1/config.pb.h"
#include "vmm/config/vmm_config.h"

namespace hearth::vmm {

class ResourceOpener {
 public:
  virtual ~ResourceOpener() = default;
  virtual absl::StatusOr<UniqueFd> OpenKernel(const hearth::v1::BootSource& boot) = 0;
  virtual absl::StatusOr<UniqueFd> OpenInitrd(const hearth::v1::BootSource& boot) = 0;
  // Read-only drives are opened O_RDONLY.
  virtual absl::StatusOr<UniqueFd> OpenDrive(const hearth::v1::Drive& drive) = 0;
  virtual absl::StatusOr<UniqueFd> OpenTap(const hearth::v1::NetworkInterface& iface) = 0;
  // The listening socket for host-initiated connections.
  virtual absl::StatusOr<UniqueFd> OpenVsockListener(const hearth::v1::Vsock& vsock) = 0;
  // A file to append metrics to.
  virtual absl::StatusOr<UniqueFd> OpenMetrics(const hearth::v1::Metrics& metrics) = 0;
  // A file to append the VMM's log to (Logger.log_path).
  virtual absl::StatusOr<UniqueFd> OpenLog(const hearth::v1::Logger& logger) = 0;
};

// Opens host paths directly (standalone `hearth-vmm --config`).
class PathOpener : public ResourceOpener {
 public:
  absl::StatusOr<UniqueFd> OpenKernel(const hearth::v1::BootSource& boot) override;
  absl::StatusOr<UniqueFd> OpenInitrd(const hearth::v1::BootSource& boot) override;
  absl::StatusOr<UniqueFd> OpenDrive(const hearth::v1::Drive& drive) override;
  // Attaches to the tap named host_dev_name (IFF_TAP | IFF_NO_PI |
  // IFF_VNET_HDR); the tap must exist or the caller must be allowed to
  // create it.
  absl::StatusOr<UniqueFd> OpenTap(const hearth::v1::NetworkInterface& iface) override;
  // Binds and listens on uds_path; a stale socket file there is replaced.
  absl::StatusOr<UniqueFd> OpenVsockListener(const hearth::v1::Vsock& vsock) override;
  absl::StatusOr<UniqueFd> OpenMetrics(const hearth::v1::Metrics& metrics) override;
  absl::StatusOr<UniqueFd> OpenLog(const hearth::v1::Logger& logger) override;
};

// Converts a Firecracker rate limiter (missing buckets: no limit).
RateLimiterConfig RateLimiterFromApi(const hearth::v1::RateLimiter& limiter);

// What the VMM is built for. kRestore builds the devices of a snapshot's
// configuration: no kernel or initrd is loaded (and none is needed).
enum class ConfigPurpose { kBoot, kRestore };

absl::StatusOr<VmmConfig> VmmConfigFromApi(const hearth::v1::VmConfig& config,
                                           ResourceOpener* opener,
                                           ConfigPurpose purpose = ConfigPurpose::kBoot);

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_CONFIG_FROM_API_H_
