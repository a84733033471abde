// VmApi: what the gRPC service asks of the agent's VM manager. The service
// (service.cc) depends on this interface only, so it is tested against a
// fake (testing/fake_vm_api.h) and the manager without gRPC.
//
// Calls that change a VM answer through `done`, which may run on another
// thread (the manager's supervisor); reads answer directly.
#ifndef HEARTH_AGENT_VM_API_H_
#define HEARTH_AGENT_VM_API_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/console_buffer.h"
#include "agent/image_roots.h"
#include "agent/managed_vm.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {

inline constexpr char kAgentVersion[] = "0.1.0";

class VmApi {
 public:
  virtual ~VmApi() = default;

  // The roots every host path a client names must resolve beneath.
  virtual const ImageRoots& roots() const = 0;

  // Hearth's own.
  virtual void CreateVm(const hearth::v1::CreateVmRequest& request, Done<hearth::v1::Vm> done) = 0;
  virtual void DeleteVm(const std::string& vm_id, bool force, Done<bool> done) = 0;
  virtual absl::StatusOr<hearth::v1::Vm> GetVm(const std::string& vm_id) const = 0;
  virtual absl::StatusOr<hearth::v1::ListVmsResponse> ListVms(
      const hearth::v1::ListVmsRequest& request) const = 0;
  virtual hearth::v1::HostInfo GetHostInfo() const = 0;
  // `sink` receives every matching event (registry.h has the contract),
  // under a lock: it must only queue. Returns an id for Unwatch.
  virtual absl::StatusOr<int> Watch(const hearth::v1::WatchVmsRequest& request,
                                    std::function<void(const hearth::v1::WatchEvent&)> sink) = 0;
  virtual void Unwatch(int id) = 0;
  virtual absl::StatusOr<std::shared_ptr<ConsoleBuffer>> Console(
      const std::string& vm_id) const = 0;
  virtual void ConsoleInput(const std::string& vm_id, std::string data) = 0;
  virtual void CloneVm(const hearth::v1::CloneVmRequest& request,
                       Done<hearth::v1::CloneVmResponse> done) = 0;

  // Firecracker's resources. Configure: a pre-boot change; `mutate` edits
  // a copy of the stored configuration, which is validated and stored.
  virtual void Configure(const std::string& vm_id,
                         std::function<absl::Status(hearth::v1::VmConfig*)> mutate,
                         Done<hearth::v1::VmConfig> done) = 0;
  virtual absl::StatusOr<hearth::v1::VmConfig> GetConfig(const std::string& vm_id) const = 0;
  virtual void InstanceStart(const std::string& vm_id, Done<hearth::v1::Vm> done) = 0;
  virtual void SendCtrlAltDel(const std::string& vm_id, Done<bool> done) = 0;
  virtual void FlushMetrics(const std::string& vm_id, Done<std::string> done) = 0;
  // "Paused" or "Resumed".
  virtual void SetVmState(const std::string& vm_id, const std::string& state,
                          Done<hearth::v1::Vm> done) = 0;
  virtual void PatchDrive(const hearth::v1::PartialDrive& patch, const std::string& vm_id,
                          Done<hearth::v1::Drive> done) = 0;
  virtual void PatchNetworkInterface(const hearth::v1::PartialNetworkInterface& patch,
                                     const std::string& vm_id,
                                     Done<hearth::v1::NetworkInterface> done) = 0;
  virtual void PatchBalloon(const std::string& vm_id, uint32_t amount_mib,
                            Done<hearth::v1::Balloon> done) = 0;
  virtual void PatchBalloonStatistics(const std::string& vm_id, uint32_t interval_s,
                                      Done<hearth::v1::Balloon> done) = 0;
  virtual void GetBalloonStatistics(const std::string& vm_id,
                                    Done<hearth::v1::BalloonStatistics> done) = 0;
  virtual void CreateSnapshot(const std::string& vm_id,
                              const hearth::v1::SnapshotCreateParams& params,
                              Done<hearth::v1::CreateSnapshotResponse> done) = 0;
  virtual void LoadSnapshot(const std::string& vm_id, const hearth::v1::SnapshotLoadParams& params,
                            Done<hearth::v1::Vm> done) = 0;
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_VM_API_H_
