// The standalone VMM's configuration path (vmm/main.cc): a Firecracker-style
// JSON document parsed into hearth.v1.VmConfig (api::ParseVmConfigJson),
// validated (api::ValidateVmConfig) and turned into a VmmConfig
// (vmm::VmmConfigFromApi) with every resource "opened" as /dev/null. A
// document that passes validation must convert, and the result must respect
// the limits validation promised.
//
// Input: flags u8 (bit 0: require a boot source), then the JSON text.
#include <fcntl.h>

#include <string>

#include "api/validate.h"
#include "tests/fuzz/fuzz_support.h"
#include "vmm/config/from_api.h"

namespace hearth::fuzz {
namespace {

absl::StatusOr<UniqueFd> DevNull() {
  UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return absl::InternalError("open /dev/null");
  return fd;
}

class NullOpener : public vmm::ResourceOpener {
 public:
  absl::StatusOr<UniqueFd> OpenKernel(const v1::BootSource&) override { return DevNull(); }
  absl::StatusOr<UniqueFd> OpenInitrd(const v1::BootSource&) override { return DevNull(); }
  absl::StatusOr<UniqueFd> OpenDrive(const v1::Drive&) override { return DevNull(); }
  absl::StatusOr<UniqueFd> OpenTap(const v1::NetworkInterface&) override { return DevNull(); }
  absl::StatusOr<UniqueFd> OpenVsockListener(const v1::Vsock&) override { return DevNull(); }
  absl::StatusOr<UniqueFd> OpenMetrics(const v1::Metrics&) override { return DevNull(); }
  absl::StatusOr<UniqueFd> OpenLog(const v1::Logger&) override { return DevNull(); }
};

}  // namespace
}  // namespace hearth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  fuzz::FuzzInput input(data, size);
  const bool require_boot_source = input.Bool();
  const std::string json = input.Rest();

  absl::StatusOr<v1::VmConfig> parsed = api::ParseVmConfigJson(json);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  absl::Status valid = api::ValidateVmConfig(*parsed, require_boot_source);
  if (!valid.ok()) {
    FUZZ_CHECK(valid.code() == absl::StatusCode::kInvalidArgument ||
               valid.code() == absl::StatusCode::kUnimplemented);
    FUZZ_CHECK(!valid.message().empty());
    return 0;
  }
  if (!parsed->has_boot_source()) return 0;  // a VM still being configured
  fuzz::NullOpener opener;
  absl::StatusOr<vmm::VmmConfig> config = vmm::VmmConfigFromApi(*parsed, &opener);
  if (parsed->has_mmds_config() || parsed->has_mmds()) {
    // Valid Firecracker, named as not implemented.
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kUnimplemented);
    return 0;
  }
  FUZZ_CHECK(config.ok());
  FUZZ_CHECK(config->machine.vcpu_count >= 1 && config->machine.vcpu_count <= api::kMaxVcpus);
  FUZZ_CHECK(config->machine.mem_size_mib > 0);
  FUZZ_CHECK(config->boot.kernel.valid());
  FUZZ_CHECK(config->boot.boot_args.size() <= api::kMaxBootArgsLength);
  FUZZ_CHECK(config->drives.size() == static_cast<size_t>(parsed->drives_size()));
  for (const vmm::DriveConfig& drive : config->drives) FUZZ_CHECK(drive.file.valid());
  if (config->vsock.has_value()) FUZZ_CHECK(config->vsock->guest_cid >= api::kMinGuestCid);
  return 0;
}
