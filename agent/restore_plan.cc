#include "agent/restore_plan.h"

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/labels.h"
#include "api/validate.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"

namespace hearth::agent {

namespace api = ::hearth::v1;

absl::StatusOr<std::string> MemoryPath(const api::MemoryBackend* backend, bool has_backend,
                                       const std::string& mem_file_path, const std::string& field) {
  if (has_backend && !mem_file_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": set mem_backend or mem_file_path, not both"));
  }
  if (!has_backend) {
    if (mem_file_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".mem_backend: required"));
    }
    return mem_file_path;
  }
  if (backend->backend_type() == "Uffd") {
    return absl::UnimplementedError(absl::StrCat(
        field, ".mem_backend.backend_type: \"Uffd\" is not implemented by Hearth; use \"File\""));
  }
  if (backend->backend_type() != "File") {
    return absl::InvalidArgumentError(absl::StrCat(field, ".mem_backend.backend_type: \"",
                                                   absl::CHexEscape(backend->backend_type()),
                                                   "\" is not one of File, Uffd"));
  }
  if (backend->backend_path().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".mem_backend.backend_path: required"));
  }
  return backend->backend_path();
}

bool OnlyLoggerAndMetrics(const api::VmConfig& spec) {
  api::VmConfig rest = spec;
  rest.clear_logger();
  rest.clear_metrics();
  rest.clear_machine_config();
  return rest.ByteSizeLong() == 0;
}

absl::StatusOr<std::string> CheckLoadParams(const api::SnapshotLoadParams& params) {
  if (params.snapshot_path().empty()) {
    return absl::InvalidArgumentError("params.snapshot_path: required");
  }
  ASSIGN_OR_RETURN(std::string memory, MemoryPath(&params.mem_backend(), params.has_mem_backend(),
                                                  params.mem_file_path(), "params"));
  if (!params.huge_pages().empty() && params.huge_pages() != "Snapshot" &&
      params.huge_pages() != "None") {
    return absl::UnimplementedError(
        absl::StrCat("params.huge_pages: \"", absl::CHexEscape(params.huge_pages()),
                     "\" is not implemented by Hearth (restored memory is mapped from the file)"));
  }
  return memory;
}

absl::StatusOr<api::VmConfig> PlanRestore(const api::VmConfig& snapshot,
                                          const api::SnapshotLoadParams& params,
                                          absl::Span<const api::DriveOverride> drive_overrides,
                                          const api::VmConfig& previous) {
  api::VmConfig spec = snapshot;
  for (int i = 0; i < params.network_overrides_size(); ++i) {
    const api::NetworkOverride& o = params.network_overrides(i);
    bool matched = false;
    for (api::NetworkInterface& iface : *spec.mutable_network_interfaces()) {
      if (iface.iface_id() != o.iface_id()) continue;
      iface.set_host_dev_name(o.host_dev_name());
      matched = true;
    }
    if (!matched) {
      return absl::InvalidArgumentError(absl::StrCat("params.network_overrides[", i,
                                                     "].iface_id: the snapshot has no interface \"",
                                                     absl::CHexEscape(o.iface_id()), "\""));
    }
  }
  if (params.has_vsock_override()) {
    if (!spec.has_vsock()) {
      return absl::InvalidArgumentError("params.vsock_override: the snapshot has no vsock device");
    }
    spec.mutable_vsock()->set_uds_path(params.vsock_override().uds_path());
  }
  for (size_t i = 0; i < drive_overrides.size(); ++i) {
    const api::DriveOverride& o = drive_overrides[i];
    bool matched = false;
    for (api::Drive& drive : *spec.mutable_drives()) {
      if (drive.drive_id() != o.drive_id()) continue;
      drive.set_path_on_host(o.path_on_host());
      matched = true;
    }
    if (!matched) {
      return absl::InvalidArgumentError(absl::StrCat("drive_overrides[", i,
                                                     "].drive_id: the snapshot has no drive \"",
                                                     absl::CHexEscape(o.drive_id()), "\""));
    }
  }
  if (previous.has_logger()) *spec.mutable_logger() = previous.logger();
  if (previous.has_metrics()) *spec.mutable_metrics() = previous.metrics();
  spec.mutable_machine_config()->set_track_dirty_pages(params.track_dirty_pages() ||
                                                       params.enable_diff_snapshots());
  RETURN_IF_ERROR(hearth::api::ValidateVmConfig(spec, /*require_boot_source=*/false));
  return spec;
}

absl::Status CheckCloneRequest(const api::CloneVmRequest& request) {
  if (request.snapshot_path().empty()) {
    return absl::InvalidArgumentError("snapshot_path: required");
  }
  if (request.clones().empty() || request.clones_size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("clones: 1 to 64 clones per request, got ", request.clones_size()));
  }
  std::set<std::string> ids;
  for (int i = 0; i < request.clones_size(); ++i) {
    const api::CloneSpec& clone = request.clones(i);
    absl::Status valid = ValidateVmId(clone.vm_id());
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("clones[", i, "].", valid.message()));
    }
    if (!ids.insert(clone.vm_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("clones[", i, "].vm_id: \"", clone.vm_id(), "\" appears twice"));
    }
    RETURN_IF_ERROR(ValidateLabels(clone.labels()));
    if (clone.has_mmds()) {
      return absl::UnimplementedError(absl::StrCat(
          "clones[", i, "].mmds: MMDS is not implemented by Hearth yet (no guest-facing MMDS)"));
    }
  }
  return MemoryPath(&request.mem_backend(), request.has_mem_backend(), "", "").status();
}

std::string CloneKey(const api::CloneVmRequest& request, const api::CloneSpec& clone) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(clone, &text);
  return absl::StrCat(request.snapshot_path(), "\n", request.mem_backend().backend_path(), "\n",
                      text);
}

api::SnapshotLoadParams CloneLoadParams(const api::CloneVmRequest& request,
                                        const api::CloneSpec& clone) {
  api::SnapshotLoadParams params;
  params.set_snapshot_path(request.snapshot_path());
  *params.mutable_mem_backend() = request.mem_backend();
  params.set_track_dirty_pages(request.track_dirty_pages());
  params.set_resume_vm(clone.resume_vm());
  *params.mutable_network_overrides() = clone.network_overrides();
  if (clone.has_vsock_override()) *params.mutable_vsock_override() = clone.vsock_override();
  return params;
}

}  // namespace hearth::agent
