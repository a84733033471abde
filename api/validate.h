// Validation of hearth.v1 resources, shared by the agent (every Put/Patch
// and CreateVm) and the standalone VMM (`hearth-vmm --config`). Errors are
// INVALID_ARGUMENT with the field path first ("machine_config.vcpu_count:
// must be 1..32, got 0"), or UNIMPLEMENTED for a valid Firecracker value
// Hearth does not support (naming it and saying why).
#ifndef HEARTH_API_VALIDATE_H_
#define HEARTH_API_VALIDATE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hearth/v1/config.pb.h"

namespace hearth::api {

inline constexpr uint32_t kMaxVcpus = 32;
inline constexpr uint32_t kDefaultVcpuCount = 1;
inline constexpr uint32_t kDefaultMemSizeMib = 128;
// Linux x86's COMMAND_LINE_SIZE less the NUL, less room Hearth keeps for the
// virtio-mmio device announcements it appends.
inline constexpr size_t kMaxBootArgsLength = 2047 - 512;
inline constexpr size_t kMaxMmdsBytes = 51200;
inline constexpr uint32_t kMinGuestCid = 3;

// Values with defaults applied.
uint32_t VcpuCount(const v1::MachineConfig& machine);
uint32_t MemSizeMib(const v1::MachineConfig& machine);
bool HugePages2M(const v1::MachineConfig& machine);
// Sets every unset field to its default (what GetMachineConfig shows).
void FillMachineConfigDefaults(v1::MachineConfig* machine);

// "12:34:56:78:9a:bc" -> bytes; nullopt if malformed.
std::optional<std::array<uint8_t, 6>> ParseMac(absl::string_view text);

// Identifiers chosen by clients inside a VM's configuration (drive_id,
// iface_id): [A-Za-z0-9_-]{1,64}. vm_id has its own, stricter rule (it
// names a cgroup and a jail): agent/labels.h ValidateVmId.
absl::Status ValidateId(absl::string_view field, absl::string_view id);

absl::Status ValidateMachineConfig(const v1::MachineConfig& machine,
                                   absl::string_view field = "machine_config");
absl::Status ValidateBootSource(const v1::BootSource& boot,
                                absl::string_view field = "boot_source");
absl::Status ValidateRateLimiter(const v1::RateLimiter& limiter, absl::string_view field);
absl::Status ValidateDrive(const v1::Drive& drive, absl::string_view field);
absl::Status ValidateNetworkInterface(const v1::NetworkInterface& iface, absl::string_view field);
absl::Status ValidateVsock(const v1::Vsock& vsock, absl::string_view field = "vsock");
absl::Status ValidateEntropy(const v1::Entropy& entropy, absl::string_view field = "entropy");
absl::Status ValidateSerial(const v1::Serial& serial, absl::string_view field = "serial");
absl::Status ValidateBalloon(const v1::Balloon& balloon, uint32_t mem_size_mib,
                             absl::string_view field = "balloon");
absl::Status ValidateLogger(const v1::Logger& logger, absl::string_view field = "logger");
absl::Status ValidateMetrics(const v1::Metrics& metrics, absl::string_view field = "metrics");
absl::Status ValidateMmdsConfig(const v1::MmdsConfig& mmds,
                                absl::string_view field = "mmds_config");
absl::Status ValidateCpuConfig(const v1::CpuConfig& cpu, absl::string_view field = "cpu_config");

// The whole configuration, including cross-field rules (unique ids, one
// root device, balloon within memory, MMDS interfaces that exist). A
// missing boot source is allowed when `require_boot_source` is false (a VM
// still being configured).
absl::Status ValidateVmConfig(const v1::VmConfig& config, bool require_boot_source);

// Parses a Firecracker `--config-file` document (JSON) into a VmConfig.
// Syntax errors and unknown keys name the offending field; the result is
// not yet validated.
absl::StatusOr<v1::VmConfig> ParseVmConfigJson(absl::string_view json);

}  // namespace hearth::api

#endif  // HEARTH_API_VALIDATE_H_
