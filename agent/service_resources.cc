// HearthService: Firecracker's pre-boot resources (boot source, machine
// and CPU configuration, drives, network interfaces, vsock, entropy,
// serial, balloon, logger, metrics) and their post-boot patches. What needs
// no VM state is checked here; the change goes to VmApi::Configure or the
// matching post-boot call.
#include <fcntl.h>

#include "absl/strings/str_cat.h"
#include "agent/host_resources.h"
#include "agent/service.h"
#include "agent/unary_call.h"
#include "api/validate.h"
#include "common/status_macros.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;

namespace {

absl::Status Required(bool present, absl::string_view field) {
  if (present) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
}

// Replaces the element of `list` whose id is `item`'s, or appends `item`
// (Firecracker's PUT /drives/{id} and /network-interfaces/{id}).
template <typename T>
void Upsert(google::protobuf::RepeatedPtrField<T>* list, const T& item,
            const std::string& (T::*id)() const) {
  for (T& existing : *list) {
    if ((existing.*id)() == (item.*id)()) {
      existing = item;
      return;
    }
  }
  *list->Add() = item;
}

}  // namespace

template <typename Response>
grpc::ServerUnaryReactor* HearthService::Configure(
    Context* context, const char* method, const std::string& vm_id,
    std::function<absl::Status(api::VmConfig*)> mutate,
    std::function<void(const api::VmConfig&, Response*)> result, Response* response) {
  UnaryCall call(context, metrics_, method);
  manager_->Configure(vm_id, std::move(mutate),
                      [call, result, response](absl::StatusOr<api::VmConfig> config) {
                        if (config.ok()) result(*config, response);
                        call.Finish(config.status());
                      });
  return call.reactor();
}

template <typename T>
grpc::ServerUnaryReactor* HearthService::Replace(Context* context, const char* method,
                                                 const std::string& vm_id,
                                                 const absl::Status& checked, const T& value,
                                                 T* (api::VmConfig::*mutable_field)(),
                                                 const T& (api::VmConfig::*field)() const,
                                                 T* response) {
  if (!checked.ok()) return UnaryCall(context, metrics_, method).Finish(checked);
  return Configure<T>(
      context, method, vm_id,
      [value, mutable_field](api::VmConfig* config) {
        *(config->*mutable_field)() = value;
        return absl::OkStatus();
      },
      [field](const api::VmConfig& config, T* out) { *out = (config.*field)(); }, response);
}

absl::StatusOr<api::VmConfig> HearthService::ConfigWithBalloon(const std::string& vm_id,
                                                               bool needs_statistics) const {
  ASSIGN_OR_RETURN(api::VmConfig config, manager_->GetConfig(vm_id));
  if (!config.has_balloon()) {
    return absl::NotFoundError(absl::StrCat("vm \"", vm_id, "\" has no balloon device"));
  }
  if (needs_statistics && config.balloon().stats_polling_interval_s() == 0) {
    return absl::FailedPreconditionError(
        "balloon statistics were not enabled before boot (stats_polling_interval_s is 0)");
  }
  return config;
}

grpc::ServerUnaryReactor* HearthService::PutBootSource(Context* context,
                                                       const api::PutBootSourceRequest* request,
                                                       api::BootSource* response) {
  if (Unary* refused = Oversized(context, "PutBootSource", *request)) return refused;
  const api::BootSource& boot = request->boot_source();
  absl::Status checked = Required(request->has_boot_source(), "boot_source");
  if (checked.ok()) checked = validate::ValidateBootSource(boot);
  if (checked.ok()) {
    checked = CheckPath(manager_->roots(), "boot_source.kernel_image_path",
                        boot.kernel_image_path(), O_RDONLY);
  }
  if (checked.ok()) {
    checked = CheckPath(manager_->roots(), "boot_source.initrd_path", boot.initrd_path(), O_RDONLY);
  }
  return Replace(context, "PutBootSource", request->vm_id(), checked, boot,
                 &api::VmConfig::mutable_boot_source, &api::VmConfig::boot_source, response);
}

grpc::ServerUnaryReactor* HearthService::GetMachineConfig(
    Context* context, const api::GetMachineConfigRequest* request, api::MachineConfig* response) {
  if (Unary* refused = Oversized(context, "GetMachineConfig", *request)) return refused;
  UnaryCall call(context, metrics_, "GetMachineConfig");
  absl::StatusOr<api::VmConfig> config = manager_->GetConfig(request->vm_id());
  if (config.ok()) {
    *response = config->machine_config();
    validate::FillMachineConfigDefaults(response);
  }
  return call.Finish(config.status());
}

grpc::ServerUnaryReactor* HearthService::PutMachineConfig(
    Context* context, const api::PutMachineConfigRequest* request, api::MachineConfig* response) {
  if (Unary* refused = Oversized(context, "PutMachineConfig", *request)) return refused;
  const api::MachineConfig& machine = request->machine_config();
  absl::Status checked = Required(request->has_machine_config(), "machine_config");
  if (checked.ok()) checked = Required(machine.has_vcpu_count(), "machine_config.vcpu_count");
  if (checked.ok()) checked = Required(machine.has_mem_size_mib(), "machine_config.mem_size_mib");
  if (checked.ok()) checked = validate::ValidateMachineConfig(machine);
  if (!checked.ok()) return UnaryCall(context, metrics_, "PutMachineConfig").Finish(checked);
  return Configure<api::MachineConfig>(
      context, "PutMachineConfig", request->vm_id(),
      [machine](api::VmConfig* config) {
        *config->mutable_machine_config() = machine;
        validate::FillMachineConfigDefaults(config->mutable_machine_config());
        return absl::OkStatus();
      },
      [](const api::VmConfig& config, api::MachineConfig* out) { *out = config.machine_config(); },
      response);
}

grpc::ServerUnaryReactor* HearthService::PatchMachineConfig(
    Context* context, const api::PatchMachineConfigRequest* request, api::MachineConfig* response) {
  if (Unary* refused = Oversized(context, "PatchMachineConfig", *request)) return refused;
  const api::MachineConfig& patch = request->machine_config();
  if (!patch.has_vcpu_count() && !patch.has_mem_size_mib() && !patch.has_smt() &&
      !patch.has_track_dirty_pages() && !patch.has_huge_pages() && !patch.has_cpu_template()) {
    return UnaryCall(context, metrics_, "PatchMachineConfig")
        .Finish(absl::InvalidArgumentError("machine_config: no field to change is set"));
  }
  return Configure<api::MachineConfig>(
      context, "PatchMachineConfig", request->vm_id(),
      [patch](api::VmConfig* config) {
        config->mutable_machine_config()->MergeFrom(patch);
        return validate::ValidateMachineConfig(config->machine_config());
      },
      [](const api::VmConfig& config, api::MachineConfig* out) { *out = config.machine_config(); },
      response);
}

grpc::ServerUnaryReactor* HearthService::PutCpuConfig(Context* context,
                                                      const api::PutCpuConfigRequest* request,
                                                      api::CpuConfig* response) {
  if (Unary* refused = Oversized(context, "PutCpuConfig", *request)) return refused;
  return Replace(context, "PutCpuConfig", request->vm_id(),
                 validate::ValidateCpuConfig(request->cpu_config()), request->cpu_config(),
                 &api::VmConfig::mutable_cpu_config, &api::VmConfig::cpu_config, response);
}

grpc::ServerUnaryReactor* HearthService::PutDrive(Context* context,
                                                  const api::PutDriveRequest* request,
                                                  api::Drive* response) {
  if (Unary* refused = Oversized(context, "PutDrive", *request)) return refused;
  const api::Drive& drive = request->drive();
  absl::Status checked = Required(request->has_drive(), "drive");
  if (checked.ok()) checked = validate::ValidateDrive(drive, "drive");
  if (checked.ok()) {
    checked = CheckPath(manager_->roots(), "drive.path_on_host", drive.path_on_host(),
                        DriveOpenFlags(drive));
  }
  if (!checked.ok()) return UnaryCall(context, metrics_, "PutDrive").Finish(checked);
  return Configure<api::Drive>(
      context, "PutDrive", request->vm_id(),
      [drive](api::VmConfig* config) {
        Upsert(config->mutable_drives(), drive, &api::Drive::drive_id);
        return absl::OkStatus();
      },
      [drive](const api::VmConfig&, api::Drive* out) { *out = drive; }, response);
}

grpc::ServerUnaryReactor* HearthService::PatchDrive(Context* context,
                                                    const api::PatchDriveRequest* request,
                                                    api::Drive* response) {
  if (Unary* refused = Oversized(context, "PatchDrive", *request)) return refused;
  UnaryCall call(context, metrics_, "PatchDrive");
  const api::PartialDrive& patch = request->drive();
  absl::Status checked = validate::ValidateId("drive.drive_id", patch.drive_id());
  if (checked.ok() && !patch.has_path_on_host() && !patch.has_rate_limiter()) {
    checked = absl::InvalidArgumentError(
        "drive: nothing to change (set path_on_host and/or rate_limiter)");
  }
  if (!checked.ok()) return call.Finish(checked);
  manager_->PatchDrive(patch, request->vm_id(), call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::PutNetworkInterface(
    Context* context, const api::PutNetworkInterfaceRequest* request,
    api::NetworkInterface* response) {
  if (Unary* refused = Oversized(context, "PutNetworkInterface", *request)) return refused;
  const api::NetworkInterface& iface = request->network_interface();
  absl::Status checked = Required(request->has_network_interface(), "network_interface");
  if (checked.ok()) checked = validate::ValidateNetworkInterface(iface, "network_interface");
  if (checked.ok()) checked = CheckTap("network_interface.host_dev_name", iface.host_dev_name());
  if (!checked.ok()) return UnaryCall(context, metrics_, "PutNetworkInterface").Finish(checked);
  return Configure<api::NetworkInterface>(
      context, "PutNetworkInterface", request->vm_id(),
      [iface](api::VmConfig* config) {
        Upsert(config->mutable_network_interfaces(), iface, &api::NetworkInterface::iface_id);
        return absl::OkStatus();
      },
      [iface](const api::VmConfig&, api::NetworkInterface* out) { *out = iface; }, response);
}

grpc::ServerUnaryReactor* HearthService::PatchNetworkInterface(
    Context* context, const api::PatchNetworkInterfaceRequest* request,
    api::NetworkInterface* response) {
  if (Unary* refused = Oversized(context, "PatchNetworkInterface", *request)) return refused;
  UnaryCall call(context, metrics_, "PatchNetworkInterface");
  const api::PartialNetworkInterface& patch = request->network_interface();
  absl::Status checked = validate::ValidateId("network_interface.iface_id", patch.iface_id());
  if (checked.ok() && !patch.has_rx_rate_limiter() && !patch.has_tx_rate_limiter()) {
    checked = absl::InvalidArgumentError(
        "network_interface: nothing to change (set rx_rate_limiter and/or tx_rate_limiter)");
  }
  if (!checked.ok()) return call.Finish(checked);
  manager_->PatchNetworkInterface(patch, request->vm_id(), call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::PutVsock(Context* context,
                                                  const api::PutVsockRequest* request,
                                                  api::Vsock* response) {
  if (Unary* refused = Oversized(context, "PutVsock", *request)) return refused;
  const api::Vsock& vsock = request->vsock();
  absl::Status checked = Required(request->has_vsock(), "vsock");
  if (checked.ok()) checked = validate::ValidateVsock(vsock);
  if (checked.ok()) checked = CheckVsockPath(manager_->roots(), "vsock.uds_path", vsock.uds_path());
  return Replace(context, "PutVsock", request->vm_id(), checked, vsock,
                 &api::VmConfig::mutable_vsock, &api::VmConfig::vsock, response);
}

grpc::ServerUnaryReactor* HearthService::PutEntropy(Context* context,
                                                    const api::PutEntropyRequest* request,
                                                    api::Entropy* response) {
  if (Unary* refused = Oversized(context, "PutEntropy", *request)) return refused;
  return Replace(context, "PutEntropy", request->vm_id(),
                 validate::ValidateEntropy(request->entropy()), request->entropy(),
                 &api::VmConfig::mutable_entropy, &api::VmConfig::entropy, response);
}

grpc::ServerUnaryReactor* HearthService::PutSerial(Context* context,
                                                   const api::PutSerialRequest* request,
                                                   api::Serial* response) {
  if (Unary* refused = Oversized(context, "PutSerial", *request)) return refused;
  const api::Serial& serial = request->serial();
  absl::Status checked = validate::ValidateSerial(serial);
  if (checked.ok()) {
    checked = CheckPath(manager_->roots(), "serial.serial_out_path", serial.serial_out_path(),
                        kOutputFileFlags);
  }
  return Replace(context, "PutSerial", request->vm_id(), checked, serial,
                 &api::VmConfig::mutable_serial, &api::VmConfig::serial, response);
}

grpc::ServerUnaryReactor* HearthService::GetBalloon(Context* context,
                                                    const api::GetBalloonRequest* request,
                                                    api::Balloon* response) {
  if (Unary* refused = Oversized(context, "GetBalloon", *request)) return refused;
  UnaryCall call(context, metrics_, "GetBalloon");
  absl::StatusOr<api::VmConfig> config = ConfigWithBalloon(request->vm_id(), false);
  if (config.ok()) *response = config->balloon();
  return call.Finish(config.status());
}

grpc::ServerUnaryReactor* HearthService::PutBalloon(Context* context,
                                                    const api::PutBalloonRequest* request,
                                                    api::Balloon* response) {
  if (Unary* refused = Oversized(context, "PutBalloon", *request)) return refused;
  absl::Status checked = Required(request->has_balloon(), "balloon");
  if (!checked.ok()) return UnaryCall(context, metrics_, "PutBalloon").Finish(checked);
  api::Balloon balloon = request->balloon();
  return Configure<api::Balloon>(
      context, "PutBalloon", request->vm_id(),
      [balloon](api::VmConfig* config) {
        RETURN_IF_ERROR(
            validate::ValidateBalloon(balloon, validate::MemSizeMib(config->machine_config())));
        *config->mutable_balloon() = balloon;
        return absl::OkStatus();
      },
      [](const api::VmConfig& config, api::Balloon* out) { *out = config.balloon(); }, response);
}

grpc::ServerUnaryReactor* HearthService::PatchBalloon(Context* context,
                                                      const api::PatchBalloonRequest* request,
                                                      api::Balloon* response) {
  if (Unary* refused = Oversized(context, "PatchBalloon", *request)) return refused;
  UnaryCall call(context, metrics_, "PatchBalloon");
  absl::StatusOr<api::VmConfig> config = ConfigWithBalloon(request->vm_id(), false);
  if (!config.ok()) return call.Finish(config.status());
  uint32_t memory = validate::MemSizeMib(config->machine_config());
  if (request->balloon().amount_mib() > memory) {
    return call.Finish(absl::InvalidArgumentError(
        absl::StrCat("balloon.amount_mib: ", request->balloon().amount_mib(),
                     " MiB is more than the guest's ", memory, " MiB")));
  }
  manager_->PatchBalloon(request->vm_id(), request->balloon().amount_mib(), call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::GetBalloonStatistics(
    Context* context, const api::GetBalloonStatisticsRequest* request,
    api::BalloonStatistics* response) {
  if (Unary* refused = Oversized(context, "GetBalloonStatistics", *request)) return refused;
  UnaryCall call(context, metrics_, "GetBalloonStatistics");
  absl::StatusOr<api::VmConfig> config = ConfigWithBalloon(request->vm_id(), true);
  if (!config.ok()) return call.Finish(config.status());
  manager_->GetBalloonStatistics(request->vm_id(), call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::PatchBalloonStatistics(
    Context* context, const api::PatchBalloonStatisticsRequest* request, api::Balloon* response) {
  if (Unary* refused = Oversized(context, "PatchBalloonStatistics", *request)) return refused;
  UnaryCall call(context, metrics_, "PatchBalloonStatistics");
  uint32_t interval = request->statistics().stats_polling_interval_s();
  if (interval == 0) {
    return call.Finish(absl::InvalidArgumentError(
        "statistics.stats_polling_interval_s: must be at least 1 (0 would disable statistics, "
        "which only a pre-boot PutBalloon may do)"));
  }
  absl::StatusOr<api::VmConfig> config = ConfigWithBalloon(request->vm_id(), true);
  if (!config.ok()) return call.Finish(config.status());
  manager_->PatchBalloonStatistics(request->vm_id(), interval, call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::PutLogger(Context* context,
                                                   const api::PutLoggerRequest* request,
                                                   api::Logger* response) {
  if (Unary* refused = Oversized(context, "PutLogger", *request)) return refused;
  const api::Logger& logger = request->logger();
  absl::Status checked = validate::ValidateLogger(logger);
  if (checked.ok()) {
    checked = CheckPath(manager_->roots(), "logger.log_path", logger.log_path(), kOutputFileFlags);
  }
  return Replace(context, "PutLogger", request->vm_id(), checked, logger,
                 &api::VmConfig::mutable_logger, &api::VmConfig::logger, response);
}

grpc::ServerUnaryReactor* HearthService::PutMetrics(Context* context,
                                                    const api::PutMetricsRequest* request,
                                                    api::Metrics* response) {
  if (Unary* refused = Oversized(context, "PutMetrics", *request)) return refused;
  const api::Metrics& metrics = request->metrics();
  absl::Status checked = validate::ValidateMetrics(metrics);
  if (checked.ok()) {
    checked = CheckPath(manager_->roots(), "metrics.metrics_path", metrics.metrics_path(),
                        kOutputFileFlags);
  }
  if (!checked.ok()) return UnaryCall(context, metrics_, "PutMetrics").Finish(checked);
  return Configure<api::Metrics>(
      context, "PutMetrics", request->vm_id(),
      [metrics](api::VmConfig* config) {
        if (config->has_metrics()) {
          return absl::FailedPreconditionError(
              "PutMetrics: metrics are already configured (once per VM, as Firecracker)");
        }
        *config->mutable_metrics() = metrics;
        return absl::OkStatus();
      },
      [](const api::VmConfig& config, api::Metrics* out) { *out = config.metrics(); }, response);
}

}  // namespace hearth::agent
