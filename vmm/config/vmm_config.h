// VmmConfig: everything the VMM needs to build and boot one microVM, as plain
// values and already-open file descriptors. It is what the API layers
// produce — the standalone JSON config (api::ParseVmConfigJson) and the
// agent's control channel, both through config/from_api.h — after
// validation; the builder never sees JSON or a host path. `api` keeps the
// original configuration for snapshots.
#ifndef HEARTH_VMM_CONFIG_VMM_CONFIG_H_
#define HEARTH_VMM_CONFIG_VMM_CONFIG_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "hearth/v1/config.pb.h"
#include "vmm/rate_limiter/rate_limiter_config.h"

namespace hearth::vmm {

// Used when boot_args is not given: Firecracker's defaults with the serial
// console switched on (Hearth's console is always there).
inline constexpr char kDefaultBootArgs[] =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux "
    "i8042.dumbkbd swiotlb=noforce";

struct MachineConfig {
  uint32_t vcpu_count = 1;
  uint64_t mem_size_mib = 128;
  bool smt = false;
  bool track_dirty_pages = false;
  bool huge_pages = false;  // 2 MiB pages
};

struct BootConfig {
  UniqueFd kernel;
  UniqueFd initrd;  // optional
  std::string boot_args;
};

struct DriveConfig {
  std::string drive_id;
  UniqueFd file;
  bool read_only = false;
  bool is_root_device = false;
  std::string partuuid;
  RateLimiterConfig rate_limiter;
};

struct NetConfig {
  std::string iface_id;
  UniqueFd tap;
  std::optional<std::array<uint8_t, 6>> guest_mac;
  uint16_t mtu = 0;  // 0: not advertised
  RateLimiterConfig rx_rate_limiter;
  RateLimiterConfig tx_rate_limiter;
};

struct VsockConfig {
  uint32_t guest_cid = 3;
  // Listening unix socket at uds_path, for host-initiated connections
  // ("CONNECT <port>\n").
  UniqueFd listener;
  // For logs, and for guest-initiated connections to "<uds_path>_<port>" in
  // standalone mode; a jailed VMM asks the agent to connect instead.
  std::string uds_path;
};

struct EntropyConfig {
  RateLimiterConfig rate_limiter;
};

struct BalloonConfig {
  uint32_t amount_mib = 0;
  bool deflate_on_oom = false;
  uint32_t stats_polling_interval_s = 0;
};

// The VMM's own log (Firecracker's logger): glog, to stderr or to a file.
struct LogConfig {
  // Where to log instead of stderr, if set.
  UniqueFd file;
  // glog's minimum level: 0 INFO (Info, Debug, Trace), 1 WARNING
  // (Warning), 2 ERROR (Error), 3 FATAL only (Off). Unset: unchanged.
  std::optional<int> min_level;
  // Prefix lines with level, time and source location (show_level or
  // show_log_origin).
  bool prefix = true;
};

struct VmmConfig {
  MachineConfig machine;
  BootConfig boot;
  std::vector<DriveConfig> drives;
  std::vector<NetConfig> network_interfaces;
  std::optional<VsockConfig> vsock;
  std::optional<EntropyConfig> entropy;
  std::optional<BalloonConfig> balloon;
  // Where to append metrics (one JSON object per line), if anywhere.
  UniqueFd metrics;
  LogConfig log;
  // The configuration this was made from (kept in snapshots).
  hearth::v1::VmConfig api;
};

}  // namespace hearth::vmm

#endif  // HEARTH_VMM_CONFIG_VMM_CONFIG_H_
