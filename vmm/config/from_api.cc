#include "vmm/config/from_api.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "api/validate.h"
#include "common/errno_status.h"
#include "common/fd_passing.h"
#include "common/status_macros.h"

namespace hearth::vmm {
namespace {

absl::StatusOr<UniqueFd> OpenFile(const std::string& path, int flags, absl::string_view field,
                                  mode_t mode = 0) {
  int fd = RetryOnEintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) return ErrnoStatus(absl::StrCat(field, ": open ", path));
  return UniqueFd(fd);
}

TokenBucketConfig BucketFromApi(const hearth::v1::TokenBucket& bucket) {
  TokenBucketConfig config;
  config.size = static_cast<uint64_t>(std::max<int64_t>(bucket.size(), 0));
  config.one_time_burst = static_cast<uint64_t>(std::max<int64_t>(bucket.one_time_burst(), 0));
  config.refill_time_ms = static_cast<uint64_t>(std::max<int64_t>(bucket.refill_time(), 0));
  return config;
}

}  // namespace

RateLimiterConfig RateLimiterFromApi(const hearth::v1::RateLimiter& limiter) {
  RateLimiterConfig config;
  config.bandwidth = BucketFromApi(limiter.bandwidth());
  config.ops = BucketFromApi(limiter.ops());
  return config;
}

absl::StatusOr<UniqueFd> PathOpener::OpenKernel(const hearth::v1::BootSource& boot) {
  return OpenFile(boot.kernel_image_path(), O_RDONLY, "boot_source.kernel_image_path");
}

absl::StatusOr<UniqueFd> PathOpener::OpenInitrd(const hearth::v1::BootSource& boot) {
  return OpenFile(boot.initrd_path(), O_RDONLY, "boot_source.initrd_path");
}

absl::StatusOr<UniqueFd> PathOpener::OpenDrive(const hearth::v1::Drive& drive) {
  bool read_only = drive.has_is_read_only() && drive.is_read_only();
  return OpenFile(drive.path_on_host(), read_only ? O_RDONLY : O_RDWR,
                  absl::StrCat("drives[", drive.drive_id(), "].path_on_host"));
}

absl::StatusOr<UniqueFd> PathOpener::OpenTap(const hearth::v1::NetworkInterface& iface) {
  std::string field = absl::StrCat("network_interfaces[", iface.iface_id(), "].host_dev_name");
  ASSIGN_OR_RETURN(UniqueFd tun, OpenFile("/dev/net/tun", O_RDWR | O_NONBLOCK, field));
  struct ifreq request = {};
  std::strncpy(request.ifr_name, iface.host_dev_name().c_str(), IFNAMSIZ - 1);
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tun.get(), TUNSETIFF, &request) < 0) {
    return ErrnoStatus(absl::StrCat(field, ": TUNSETIFF ", iface.host_dev_name()));
  }
  return tun;
}

absl::StatusOr<UniqueFd> PathOpener::OpenVsockListener(const hearth::v1::Vsock& vsock) {
  const std::string& path = vsock.uds_path();
  ASSIGN_OR_RETURN(sockaddr_un address, UnixSocketAddress(path, "vsock.uds_path"));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat("vsock.uds_path: ", path, " exists and is not a socket"));
    }
    ::unlink(path.c_str());  // a socket left behind by an earlier VM
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoStatus("vsock.uds_path: socket");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
    return ErrnoStatus(absl::StrCat("vsock.uds_path: bind ", path));
  }
  if (::listen(fd.get(), 64) < 0) return ErrnoStatus("vsock.uds_path: listen");
  return fd;
}

absl::StatusOr<UniqueFd> PathOpener::OpenMetrics(const hearth::v1::Metrics& metrics) {
  return OpenFile(metrics.metrics_path(), O_WRONLY | O_APPEND | O_CREAT, "metrics.metrics_path",
                  0644);
}

absl::StatusOr<UniqueFd> PathOpener::OpenLog(const hearth::v1::Logger& logger) {
  return OpenFile(logger.log_path(), O_WRONLY | O_APPEND | O_CREAT, "logger.log_path", 0644);
}

absl::StatusOr<VmmConfig> VmmConfigFromApi(const hearth::v1::VmConfig& api, ResourceOpener* opener,
                                           ConfigPurpose purpose) {
  const bool boot = purpose == ConfigPurpose::kBoot;
  RETURN_IF_ERROR(api::ValidateVmConfig(api, /*require_boot_source=*/boot));
  if (api.has_mmds_config() || api.has_mmds()) {
    return absl::UnimplementedError("mmds-config: MMDS is not implemented by Hearth yet");
  }
  VmmConfig config;
  const hearth::v1::MachineConfig& machine = api.machine_config();
  config.machine.vcpu_count = api::VcpuCount(machine);
  config.machine.mem_size_mib = api::MemSizeMib(machine);
  config.machine.smt = machine.smt();
  config.machine.track_dirty_pages = machine.track_dirty_pages();
  config.machine.huge_pages = api::HugePages2M(machine);
  config.api = api;
  const hearth::v1::BootSource& source = api.boot_source();
  if (boot) {
    ASSIGN_OR_RETURN(config.boot.kernel, opener->OpenKernel(source));
    if (!source.initrd_path().empty()) {
      ASSIGN_OR_RETURN(config.boot.initrd, opener->OpenInitrd(source));
    }
  }
  config.boot.boot_args = source.has_boot_args() ? source.boot_args() : kDefaultBootArgs;
  // The root device goes first, so the guest sees it as /dev/vda.
  std::vector<const hearth::v1::Drive*> drives;
  for (const hearth::v1::Drive& drive : api.drives()) {
    if (drive.is_root_device())
      drives.insert(drives.begin(), &drive);
    else
      drives.push_back(&drive);
  }
  for (const hearth::v1::Drive* drive : drives) {
    DriveConfig d;
    d.drive_id = drive->drive_id();
    d.read_only = drive->has_is_read_only() && drive->is_read_only();
    d.is_root_device = drive->is_root_device();
    d.partuuid = drive->partuuid();
    d.rate_limiter = RateLimiterFromApi(drive->rate_limiter());
    ASSIGN_OR_RETURN(d.file, opener->OpenDrive(*drive));
    config.drives.push_back(std::move(d));
  }
  for (const hearth::v1::NetworkInterface& iface : api.network_interfaces()) {
    NetConfig n;
    n.iface_id = iface.iface_id();
    if (!iface.guest_mac().empty()) n.guest_mac = api::ParseMac(iface.guest_mac());
    n.mtu = iface.has_mtu() ? static_cast<uint16_t>(iface.mtu()) : 0;
    n.rx_rate_limiter = RateLimiterFromApi(iface.rx_rate_limiter());
    n.tx_rate_limiter = RateLimiterFromApi(iface.tx_rate_limiter());
    ASSIGN_OR_RETURN(n.tap, opener->OpenTap(iface));
    config.network_interfaces.push_back(std::move(n));
  }
  if (api.has_vsock()) {
    VsockConfig v;
    v.guest_cid = api.vsock().guest_cid();
    v.uds_path = api.vsock().uds_path();
    ASSIGN_OR_RETURN(v.listener, opener->OpenVsockListener(api.vsock()));
    config.vsock = std::move(v);
  }
  if (api.has_entropy()) {
    config.entropy = EntropyConfig{RateLimiterFromApi(api.entropy().rate_limiter())};
  }
  if (api.has_balloon()) {
    config.balloon = BalloonConfig{api.balloon().amount_mib(), api.balloon().deflate_on_oom(),
                                   api.balloon().stats_polling_interval_s()};
  }
  if (api.has_metrics()) {
    ASSIGN_OR_RETURN(config.metrics, opener->OpenMetrics(api.metrics()));
  }
  if (api.has_logger()) {
    const hearth::v1::Logger& logger = api.logger();
    if (!logger.log_path().empty()) {
      ASSIGN_OR_RETURN(config.log.file, opener->OpenLog(logger));
    }
    const std::string& level = logger.level();
    if (level == "Error")
      config.log.min_level = 2;
    else if (level == "Warning" || level == "Warn")
      config.log.min_level = 1;
    else if (level == "Info" || level == "Debug" || level == "Trace")
      config.log.min_level = 0;
    else if (level == "Off")
      config.log.min_level = 3;
    config.log.prefix = !(logger.has_show_level() && !logger.show_level() &&
                          logger.has_show_log_origin() && !logger.show_log_origin());
  }
  return config;
}

}  // namespace hearth::vmm
