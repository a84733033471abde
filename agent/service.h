// The hearth.v1.Hearth gRPC service: request checks that need no VM state
// (field validation, paths under the image roots) happen here, on gRPC's
// threads; everything else is handed to the VmApi (the VmManager), whose answer
// finishes the call. Every call is counted in ApiMetrics.
//
// Uses gRPC's callback API: unary handlers return the context's default
// reactor and finish it from whichever thread has the answer; WatchVms and
// StreamConsole have reactors of their own (service_streams.cc).
#ifndef HEARTH_AGENT_SERVICE_H_
#define HEARTH_AGENT_SERVICE_H_

#include "agent/api_metrics.h"
#include "agent/vm_api.h"
#include "hearth/v1/hearth.grpc.pb.h"

namespace hearth::agent {

// absl -> gRPC status (the codes are the same numbers).
grpc::Status ToGrpcStatus(const absl::Status& status);

class HearthService final : public hearth::v1::Hearth::CallbackService {
 public:
  HearthService(VmApi* manager, ApiMetrics* metrics) : manager_(manager), metrics_(metrics) {}

  using Unary = grpc::ServerUnaryReactor;
  using Context = grpc::CallbackServerContext;

  // Firecracker's resources.
  Unary* GetInstanceInfo(Context*, const hearth::v1::GetInstanceInfoRequest*,
                         hearth::v1::InstanceInfo*) override;
  Unary* GetVersion(Context*, const hearth::v1::GetVersionRequest*,
                    hearth::v1::VersionInfo*) override;
  Unary* PutAction(Context*, const hearth::v1::PutActionRequest*,
                   hearth::v1::PutActionResponse*) override;
  Unary* PutBootSource(Context*, const hearth::v1::PutBootSourceRequest*,
                       hearth::v1::BootSource*) override;
  Unary* GetMachineConfig(Context*, const hearth::v1::GetMachineConfigRequest*,
                          hearth::v1::MachineConfig*) override;
  Unary* PutMachineConfig(Context*, const hearth::v1::PutMachineConfigRequest*,
                          hearth::v1::MachineConfig*) override;
  Unary* PatchMachineConfig(Context*, const hearth::v1::PatchMachineConfigRequest*,
                            hearth::v1::MachineConfig*) override;
  Unary* PutCpuConfig(Context*, const hearth::v1::PutCpuConfigRequest*,
                      hearth::v1::CpuConfig*) override;
  Unary* PutDrive(Context*, const hearth::v1::PutDriveRequest*, hearth::v1::Drive*) override;
  Unary* PatchDrive(Context*, const hearth::v1::PatchDriveRequest*, hearth::v1::Drive*) override;
  Unary* PutNetworkInterface(Context*, const hearth::v1::PutNetworkInterfaceRequest*,
                             hearth::v1::NetworkInterface*) override;
  Unary* PatchNetworkInterface(Context*, const hearth::v1::PatchNetworkInterfaceRequest*,
                               hearth::v1::NetworkInterface*) override;
  Unary* PutVsock(Context*, const hearth::v1::PutVsockRequest*, hearth::v1::Vsock*) override;
  Unary* PutEntropy(Context*, const hearth::v1::PutEntropyRequest*, hearth::v1::Entropy*) override;
  Unary* PutSerial(Context*, const hearth::v1::PutSerialRequest*, hearth::v1::Serial*) override;
  Unary* GetBalloon(Context*, const hearth::v1::GetBalloonRequest*, hearth::v1::Balloon*) override;
  Unary* PutBalloon(Context*, const hearth::v1::PutBalloonRequest*, hearth::v1::Balloon*) override;
  Unary* PatchBalloon(Context*, const hearth::v1::PatchBalloonRequest*,
                      hearth::v1::Balloon*) override;
  Unary* GetBalloonStatistics(Context*, const hearth::v1::GetBalloonStatisticsRequest*,
                              hearth::v1::BalloonStatistics*) override;
  Unary* PatchBalloonStatistics(Context*, const hearth::v1::PatchBalloonStatisticsRequest*,
                                hearth::v1::Balloon*) override;
  Unary* PutLogger(Context*, const hearth::v1::PutLoggerRequest*, hearth::v1::Logger*) override;
  Unary* PutMetrics(Context*, const hearth::v1::PutMetricsRequest*, hearth::v1::Metrics*) override;
  Unary* PutMmds(Context*, const hearth::v1::PutMmdsRequest*, google::protobuf::Struct*) override;
  Unary* PatchMmds(Context*, const hearth::v1::PatchMmdsRequest*,
                   google::protobuf::Struct*) override;
  Unary* GetMmds(Context*, const hearth::v1::GetMmdsRequest*, google::protobuf::Struct*) override;
  Unary* PutMmdsConfig(Context*, const hearth::v1::PutMmdsConfigRequest*,
                       hearth::v1::MmdsConfig*) override;
  Unary* CreateSnapshot(Context*, const hearth::v1::CreateSnapshotRequest*,
                        hearth::v1::CreateSnapshotResponse*) override;
  Unary* LoadSnapshot(Context*, const hearth::v1::LoadSnapshotRequest*,
                      hearth::v1::LoadSnapshotResponse*) override;
  Unary* PatchVm(Context*, const hearth::v1::PatchVmRequest*, hearth::v1::Vm*) override;
  Unary* GetVmConfig(Context*, const hearth::v1::GetVmConfigRequest*,
                     hearth::v1::VmConfig*) override;

  // Hearth's own.
  Unary* CreateVm(Context*, const hearth::v1::CreateVmRequest*, hearth::v1::Vm*) override;
  Unary* DeleteVm(Context*, const hearth::v1::DeleteVmRequest*,
                  hearth::v1::DeleteVmResponse*) override;
  Unary* GetVm(Context*, const hearth::v1::GetVmRequest*, hearth::v1::Vm*) override;
  Unary* ListVms(Context*, const hearth::v1::ListVmsRequest*,
                 hearth::v1::ListVmsResponse*) override;
  grpc::ServerWriteReactor<hearth::v1::WatchEvent>* WatchVms(
      Context*, const hearth::v1::WatchVmsRequest*) override;
  grpc::ServerBidiReactor<hearth::v1::ConsoleRequest, hearth::v1::ConsoleChunk>* StreamConsole(
      Context*) override;
  Unary* GetHostInfo(Context*, const hearth::v1::GetHostInfoRequest*,
                     hearth::v1::HostInfo*) override;
  Unary* CloneVm(Context*, const hearth::v1::CloneVmRequest*,
                 hearth::v1::CloneVmResponse*) override;

 private:
  Unary* MmdsUnimplemented(Context* context, const char* method, const std::string& vm_id);
  // Finishes the call with INVALID_ARGUMENT naming the field if a field of
  // `request` is over its size limit (field_limits.h); nullptr otherwise.
  Unary* Oversized(Context* context, const char* method, const google::protobuf::Message& request);
  // Put* of a resource the configuration holds once (boot source, vsock,
  // entropy, serial, logger, CPU config): `checked` is the request's own
  // validation; `value` replaces the field, which is returned.
  template <typename T>
  Unary* Replace(Context* context, const char* method, const std::string& vm_id,
                 const absl::Status& checked, const T& value,
                 T* (hearth::v1::VmConfig::*mutable_field)(),
                 const T& (hearth::v1::VmConfig::*field)() const, T* response);
  // A pre-boot change: `mutate` edits the stored config; `result` copies
  // what the RPC returns out of the new config.
  template <typename Response>
  Unary* Configure(Context* context, const char* method, const std::string& vm_id,
                   std::function<absl::Status(hearth::v1::VmConfig*)> mutate,
                   std::function<void(const hearth::v1::VmConfig&, Response*)> result,
                   Response* response);

  // The configuration of a VM with a balloon device: NOT_FOUND if it has
  // none; with `needs_statistics`, FAILED_PRECONDITION unless statistics
  // were enabled before boot.
  absl::StatusOr<hearth::v1::VmConfig> ConfigWithBalloon(const std::string& vm_id,
                                                         bool needs_statistics) const;

  VmApi* const manager_;
  ApiMetrics* const metrics_;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_SERVICE_H_
