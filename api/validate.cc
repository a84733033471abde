#include "api/validate.h"

#include <arpa/inet.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace hearth::api {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status Unimplemented(absl::string_view field, absl::string_view what) {
  return absl::UnimplementedError(absl::StrCat(field, ": ", what));
}

std::string Field(absl::string_view parent, absl::string_view child) {
  return absl::StrCat(parent, ".", child);
}

// `value` must be one of `allowed` (empty = the default, always fine).
absl::Status OneOf(absl::string_view field, absl::string_view value,
                   std::initializer_list<absl::string_view> allowed) {
  if (value.empty()) return absl::OkStatus();
  for (absl::string_view a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return Invalid(field,
                 absl::StrCat("\"", value, "\" is not one of ", absl::StrJoin(allowed, ", ")));
}

absl::Status NoControlCharacters(absl::string_view field, absl::string_view value) {
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
      return Invalid(field, "contains a control character");
    }
  }
  return absl::OkStatus();
}

absl::Status RequiredPath(absl::string_view field, absl::string_view path) {
  if (path.empty()) return Invalid(field, "is required");
  if (path.size() > 4096) return Invalid(field, "is longer than 4096 bytes");
  if (path.find('\0') != absl::string_view::npos) {
    return Invalid(field, "contains a NUL byte");
  }
  return absl::OkStatus();
}

absl::Status OptionalPath(absl::string_view field, absl::string_view path) {
  return path.empty() ? absl::OkStatus() : RequiredPath(field, path);
}

absl::Status ValidateTokenBucket(const v1::TokenBucket& bucket, absl::string_view field) {
  if (bucket.size() < 0) return Invalid(Field(field, "size"), "must be >= 0");
  if (bucket.one_time_burst() < 0) {
    return Invalid(Field(field, "one_time_burst"), "must be >= 0");
  }
  if (bucket.refill_time() < 0) {
    return Invalid(Field(field, "refill_time"), "must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t VcpuCount(const v1::MachineConfig& machine) {
  return machine.has_vcpu_count() ? machine.vcpu_count() : kDefaultVcpuCount;
}

uint32_t MemSizeMib(const v1::MachineConfig& machine) {
  return machine.has_mem_size_mib() ? machine.mem_size_mib() : kDefaultMemSizeMib;
}

bool HugePages2M(const v1::MachineConfig& machine) { return machine.huge_pages() == "2M"; }

void FillMachineConfigDefaults(v1::MachineConfig* machine) {
  if (!machine->has_vcpu_count()) machine->set_vcpu_count(kDefaultVcpuCount);
  if (!machine->has_mem_size_mib()) machine->set_mem_size_mib(kDefaultMemSizeMib);
  if (!machine->has_smt()) machine->set_smt(false);
  if (!machine->has_track_dirty_pages()) machine->set_track_dirty_pages(false);
  if (!machine->has_huge_pages()) machine->set_huge_pages("None");
}

std::optional<std::array<uint8_t, 6>> ParseMac(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  if (parts.size() != 6) return std::nullopt;
  std::array<uint8_t, 6> mac;
  for (size_t i = 0; i < 6; ++i) {
    if (parts[i].size() != 2 || !absl::ascii_isxdigit(parts[i][0]) ||
        !absl::ascii_isxdigit(parts[i][1])) {
      return std::nullopt;
    }
    uint32_t byte = 0;
    if (!absl::SimpleHexAtoi(parts[i], &byte)) return std::nullopt;
    mac[i] = static_cast<uint8_t>(byte);
  }
  return mac;
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return Invalid(field, absl::StrCat("must be 1 to 64 characters, got ", id.size()));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-') {
      return Invalid(field,
                     absl::StrCat("\"", absl::CHexEscape(id), "\" may only hold [A-Za-z0-9_-]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMachineConfig(const v1::MachineConfig& machine, absl::string_view field) {
  uint32_t vcpus = VcpuCount(machine);
  if (vcpus < 1 || vcpus > kMaxVcpus) {
    return Invalid(Field(field, "vcpu_count"),
                   absl::StrCat("must be 1..", kMaxVcpus, ", got ", vcpus));
  }
  if (machine.smt() && vcpus != 1 && vcpus % 2 != 0) {
    return Invalid(Field(field, "vcpu_count"),
                   absl::StrCat("must be 1 or even with smt, got ", vcpus));
  }
  uint32_t mem = MemSizeMib(machine);
  if (mem == 0) return Invalid(Field(field, "mem_size_mib"), "must be > 0");
  RETURN_IF_ERROR(OneOf(Field(field, "huge_pages"), machine.huge_pages(), {"None", "2M"}));
  if (HugePages2M(machine) && mem % 2 != 0) {
    return Invalid(Field(field, "mem_size_mib"),
                   absl::StrCat("must be a multiple of 2 with huge_pages 2M, "
                                "got ",
                                mem));
  }
  RETURN_IF_ERROR(OneOf(Field(field, "cpu_template"), machine.cpu_template(),
                        {"None", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1"}));
  if (machine.has_cpu_template() && !machine.cpu_template().empty() &&
      machine.cpu_template() != "None") {
    return Unimplemented(Field(field, "cpu_template"),
                         absl::StrCat("static CPU template \"", machine.cpu_template(),
                                      "\" is not supported by Hearth; guests see the host's "
                                      "normalised CPUID"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBootSource(const v1::BootSource& boot, absl::string_view field) {
  RETURN_IF_ERROR(RequiredPath(Field(field, "kernel_image_path"), boot.kernel_image_path()));
  RETURN_IF_ERROR(OptionalPath(Field(field, "initrd_path"), boot.initrd_path()));
  if (boot.boot_args().size() > kMaxBootArgsLength) {
    return Invalid(
        Field(field, "boot_args"),
        absl::StrCat("is ", boot.boot_args().size(), " bytes; the limit is ", kMaxBootArgsLength));
  }
  return NoControlCharacters(Field(field, "boot_args"), boot.boot_args());
}

absl::Status ValidateRateLimiter(const v1::RateLimiter& limiter, absl::string_view field) {
  RETURN_IF_ERROR(ValidateTokenBucket(limiter.bandwidth(), Field(field, "bandwidth")));
  return ValidateTokenBucket(limiter.ops(), Field(field, "ops"));
}

absl::Status ValidateDrive(const v1::Drive& drive, absl::string_view field) {
  RETURN_IF_ERROR(ValidateId(Field(field, "drive_id"), drive.drive_id()));
  if (!drive.socket().empty()) {
    return Unimplemented(Field(field, "socket"),
                         "vhost-user block devices are not supported by Hearth");
  }
  RETURN_IF_ERROR(RequiredPath(Field(field, "path_on_host"), drive.path_on_host()));
  if (!drive.partuuid().empty() && !drive.is_root_device()) {
    return Invalid(Field(field, "partuuid"), "is only meaningful for the root device");
  }
  RETURN_IF_ERROR(NoControlCharacters(Field(field, "partuuid"), drive.partuuid()));
  RETURN_IF_ERROR(OneOf(Field(field, "cache_type"), drive.cache_type(), {"Unsafe", "Writeback"}));
  RETURN_IF_ERROR(OneOf(Field(field, "io_engine"), drive.io_engine(), {"Sync", "Async"}));
  if (drive.io_engine() == "Async") {
    return Unimplemented(Field(field, "io_engine"),
                         "\"Async\" (io_uring) is not supported by Hearth; "
                         "use \"Sync\"");
  }
  return ValidateRateLimiter(drive.rate_limiter(), Field(field, "rate_limiter"));
}

absl::Status ValidateNetworkInterface(const v1::NetworkInterface& iface, absl::string_view field) {
  RETURN_IF_ERROR(ValidateId(Field(field, "iface_id"), iface.iface_id()));
  const std::string& tap = iface.host_dev_name();
  // IFNAMSIZ is 16 including the NUL.
  if (tap.empty() || tap.size() > 15 || tap.find_first_of("/ \t\n:") != std::string::npos) {
    return Invalid(Field(field, "host_dev_name"),
                   absl::StrCat("\"", absl::CHexEscape(tap),
                                "\" is not a valid interface name (1-15 "
                                "characters, no '/', ':' or spaces)"));
  }
  if (!iface.guest_mac().empty()) {
    std::optional<std::array<uint8_t, 6>> mac = ParseMac(iface.guest_mac());
    if (!mac.has_value()) {
      return Invalid(Field(field, "guest_mac"),
                     absl::StrCat("\"", absl::CHexEscape(iface.guest_mac()),
                                  "\" is not of the form 12:34:56:78:9a:bc"));
    }
    if ((*mac)[0] & 1) {
      return Invalid(Field(field, "guest_mac"), "must be a unicast address");
    }
  }
  if (iface.has_mtu() && (iface.mtu() < 68 || iface.mtu() > 65535)) {
    return Invalid(Field(field, "mtu"), absl::StrCat("must be 68..65535, got ", iface.mtu()));
  }
  RETURN_IF_ERROR(ValidateRateLimiter(iface.rx_rate_limiter(), Field(field, "rx_rate_limiter")));
  return ValidateRateLimiter(iface.tx_rate_limiter(), Field(field, "tx_rate_limiter"));
}

absl::Status ValidateVsock(const v1::Vsock& vsock, absl::string_view field) {
  if (vsock.guest_cid() < kMinGuestCid || vsock.guest_cid() == UINT32_MAX) {
    return Invalid(Field(field, "guest_cid"),
                   absl::StrCat("must be >= 3 (0-2 are reserved), got ", vsock.guest_cid()));
  }
  RETURN_IF_ERROR(RequiredPath(Field(field, "uds_path"), vsock.uds_path()));
  // sockaddr_un.sun_path holds 108 bytes; "<uds_path>_<port>" must fit too.
  if (vsock.uds_path().size() > 96) {
    return Invalid(Field(field, "uds_path"),
                   "is longer than 96 bytes (unix socket paths hold 108, and "
                   "\"_<port>\" is appended for guest-initiated connections)");
  }
  return absl::OkStatus();
}

absl::Status ValidateEntropy(const v1::Entropy& entropy, absl::string_view field) {
  return ValidateRateLimiter(entropy.rate_limiter(), Field(field, "rate_limiter"));
}

absl::Status ValidateSerial(const v1::Serial& serial, absl::string_view field) {
  RETURN_IF_ERROR(OptionalPath(Field(field, "serial_out_path"), serial.serial_out_path()));
  return ValidateTokenBucket(serial.rate_limiter(), Field(field, "rate_limiter"));
}

absl::Status ValidateBalloon(const v1::Balloon& balloon, uint32_t mem_size_mib,
                             absl::string_view field) {
  if (balloon.amount_mib() > mem_size_mib) {
    return Invalid(
        Field(field, "amount_mib"),
        absl::StrCat(balloon.amount_mib(), " MiB is more than the guest's ", mem_size_mib, " MiB"));
  }
  if (balloon.free_page_hinting() || balloon.free_page_reporting()) {
    return Unimplemented(field,
                         "free_page_hinting and free_page_reporting are not "
                         "supported by Hearth");
  }
  return absl::OkStatus();
}

absl::Status ValidateLogger(const v1::Logger& logger, absl::string_view field) {
  RETURN_IF_ERROR(OptionalPath(Field(field, "log_path"), logger.log_path()));
  return OneOf(Field(field, "level"), logger.level(),
               {"Error", "Warning", "Info", "Debug", "Trace", "Off"});
}

absl::Status ValidateMetrics(const v1::Metrics& metrics, absl::string_view field) {
  return RequiredPath(Field(field, "metrics_path"), metrics.metrics_path());
}

absl::Status ValidateMmdsConfig(const v1::MmdsConfig& mmds, absl::string_view field) {
  RETURN_IF_ERROR(OneOf(Field(field, "version"), mmds.version(), {"V1", "V2"}));
  if (!mmds.ipv4_address().empty()) {
    in_addr address;
    if (::inet_pton(AF_INET, mmds.ipv4_address().c_str(), &address) != 1) {
      return Invalid(
          Field(field, "ipv4_address"),
          absl::StrCat("\"", absl::CHexEscape(mmds.ipv4_address()), "\" is not an IPv4 address"));
    }
  }
  if (mmds.network_interfaces().empty()) {
    return Invalid(Field(field, "network_interfaces"), "must name at least one interface");
  }
  return absl::OkStatus();
}

absl::Status ValidateCpuConfig(const v1::CpuConfig& cpu, absl::string_view field) {
  if (cpu.cpuid_modifiers_size() > 0 || cpu.msr_modifiers_size() > 0 ||
      cpu.kvm_capabilities_size() > 0) {
    return Unimplemented(field,
                         "custom CPU templates are not supported by Hearth; "
                         "guests see the host's normalised CPUID");
  }
  return absl::OkStatus();
}

absl::Status ValidateVmConfig(const v1::VmConfig& config, bool require_boot_source) {
  if (config.has_boot_source() || require_boot_source) {
    RETURN_IF_ERROR(ValidateBootSource(config.boot_source()));
  }
  RETURN_IF_ERROR(ValidateMachineConfig(config.machine_config()));
  RETURN_IF_ERROR(ValidateCpuConfig(config.cpu_config()));
  std::set<std::string> drive_ids;
  int roots = 0;
  for (int i = 0; i < config.drives_size(); ++i) {
    std::string field = absl::StrCat("drives[", i, "]");
    RETURN_IF_ERROR(ValidateDrive(config.drives(i), field));
    if (!drive_ids.insert(config.drives(i).drive_id()).second) {
      return Invalid(Field(field, "drive_id"), absl::StrCat("\"", config.drives(i).drive_id(),
                                                            "\" is used by another drive"));
    }
    if (config.drives(i).is_root_device() && ++roots > 1) {
      return Invalid(Field(field, "is_root_device"), "only one drive can be the root device");
    }
  }
  std::set<std::string> iface_ids, taps;
  for (int i = 0; i < config.network_interfaces_size(); ++i) {
    std::string field = absl::StrCat("network_interfaces[", i, "]");
    const v1::NetworkInterface& iface = config.network_interfaces(i);
    RETURN_IF_ERROR(ValidateNetworkInterface(iface, field));
    if (!iface_ids.insert(iface.iface_id()).second) {
      return Invalid(Field(field, "iface_id"),
                     absl::StrCat("\"", iface.iface_id(), "\" is used by another interface"));
    }
    if (!taps.insert(iface.host_dev_name()).second) {
      return Invalid(Field(field, "host_dev_name"),
                     absl::StrCat("\"", iface.host_dev_name(), "\" is used by another interface"));
    }
  }
  if (config.has_vsock()) RETURN_IF_ERROR(ValidateVsock(config.vsock()));
  if (config.has_entropy()) RETURN_IF_ERROR(ValidateEntropy(config.entropy()));
  if (config.has_serial()) RETURN_IF_ERROR(ValidateSerial(config.serial()));
  if (config.has_balloon()) {
    RETURN_IF_ERROR(ValidateBalloon(config.balloon(), MemSizeMib(config.machine_config())));
  }
  if (config.has_logger()) RETURN_IF_ERROR(ValidateLogger(config.logger()));
  if (config.has_metrics()) RETURN_IF_ERROR(ValidateMetrics(config.metrics()));
  if (config.has_mmds_config()) {
    RETURN_IF_ERROR(ValidateMmdsConfig(config.mmds_config()));
    for (const std::string& name : config.mmds_config().network_interfaces()) {
      if (iface_ids.count(name) == 0) {
        return Invalid("mmds_config.network_interfaces", absl::StrCat("\"", name,
                                                                      "\" is not a configured "
                                                                      "network interface"));
      }
    }
  }
  if (config.pmem_size() > 0) {
    return Unimplemented("pmem", "virtio-pmem devices are not supported by Hearth");
  }
  if (config.has_memory_hotplug()) {
    return Unimplemented("memory_hotplug", "memory hotplug is not supported by Hearth");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::VmConfig> ParseVmConfigJson(absl::string_view json) {
  v1::VmConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &config, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", std::string(status.message())));
  }
  return config;
}

}  // namespace hearth::api
