#include "agent/service.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <deque>
#include <memory>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/field_limits.h"
#include "agent/host_resources.h"
#include "agent/unary_call.h"
#include "api/validate.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace hearth::agent {

namespace api = ::hearth::v1;
namespace validate = ::hearth::api;

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      TruncateMessage(status.message()));
}

namespace {

absl::Status Unimplemented(absl::string_view what, absl::string_view why) {
  return absl::UnimplementedError(absl::StrCat(what, " is not implemented by Hearth yet: ", why));
}

const char* FirecrackerState(api::VmState state) {
  switch (state) {
    case api::VM_STATE_RUNNING:
      return "Running";
    case api::VM_STATE_PAUSED:
      return "Paused";
    default:
      return "Not started";
  }
}

}  // namespace

// ----------------------------------------------------------------------------
// Firecracker's resources.

grpc::ServerUnaryReactor* HearthService::GetInstanceInfo(Context* context,
                                                         const api::GetInstanceInfoRequest* request,
                                                         api::InstanceInfo* response) {
  if (Unary* refused = Oversized(context, "GetInstanceInfo", *request)) return refused;
  UnaryCall call(context, metrics_, "GetInstanceInfo");
  absl::StatusOr<api::Vm> vm = manager_->GetVm(request->vm_id());
  if (vm.ok()) {
    response->set_app_name("hearth");
    response->set_id(vm->vm_id());
    response->set_state(FirecrackerState(vm->state()));
    response->set_vmm_version(kAgentVersion);
  }
  return call.Finish(vm.status());
}

grpc::ServerUnaryReactor* HearthService::GetVersion(Context* context,
                                                    const api::GetVersionRequest* request,
                                                    api::VersionInfo* response) {
  if (Unary* refused = Oversized(context, "GetVersion", *request)) return refused;
  UnaryCall call(context, metrics_, "GetVersion");
  if (!request->vm_id().empty()) {
    absl::StatusOr<api::Vm> vm = manager_->GetVm(request->vm_id());
    if (!vm.ok()) return call.Finish(vm.status());
  }
  response->set_firecracker_version(kAgentVersion);
  return call.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* HearthService::PutAction(Context* context,
                                                   const api::PutActionRequest* request,
                                                   api::PutActionResponse*) {
  if (Unary* refused = Oversized(context, "PutAction", *request)) return refused;
  UnaryCall call(context, metrics_, "PutAction");
  const std::string& type = request->action().action_type();
  if (type == "InstanceStart") {
    manager_->InstanceStart(request->vm_id(),
                            [call](absl::StatusOr<api::Vm> vm) { call.Finish(vm.status()); });
  } else if (type == "SendCtrlAltDel") {
    manager_->SendCtrlAltDel(request->vm_id(),
                             [call](absl::StatusOr<bool> r) { call.Finish(r.status()); });
  } else if (type == "FlushMetrics") {
    manager_->FlushMetrics(request->vm_id(),
                           [call](absl::StatusOr<std::string> r) { call.Finish(r.status()); });
  } else {
    return call.Finish(absl::InvalidArgumentError(
        absl::StrCat("action.action_type: \"", absl::CHexEscape(type),
                     "\" is not one of InstanceStart, SendCtrlAltDel, FlushMetrics")));
  }
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::Oversized(Context* context, const char* method,
                                                   const google::protobuf::Message& request) {
  absl::Status bounded = CheckFieldSizes(request);
  if (bounded.ok()) return nullptr;
  return UnaryCall(context, metrics_, method).Finish(bounded);
}

// MMDS needs a guest-facing network stack in the VMM (Firecracker's
// dumbo); hearth-vmm has none yet, so the calls say so once the VM exists.
grpc::ServerUnaryReactor* HearthService::MmdsUnimplemented(Context* context, const char* method,
                                                           const std::string& vm_id) {
  UnaryCall call(context, metrics_, method);
  absl::StatusOr<api::Vm> vm = manager_->GetVm(vm_id);
  if (!vm.ok()) return call.Finish(vm.status());
  return call.Finish(Unimplemented(
      "MMDS",
      "hearth-vmm has no guest-facing MMDS network stack; pass metadata on the kernel "
      "command line or over vsock"));
}

grpc::ServerUnaryReactor* HearthService::PutMmds(Context* context,
                                                 const api::PutMmdsRequest* request,
                                                 google::protobuf::Struct*) {
  if (Unary* refused = Oversized(context, "PutMmds", *request)) return refused;
  return MmdsUnimplemented(context, "PutMmds", request->vm_id());
}

grpc::ServerUnaryReactor* HearthService::PatchMmds(Context* context,
                                                   const api::PatchMmdsRequest* request,
                                                   google::protobuf::Struct*) {
  if (Unary* refused = Oversized(context, "PatchMmds", *request)) return refused;
  return MmdsUnimplemented(context, "PatchMmds", request->vm_id());
}

grpc::ServerUnaryReactor* HearthService::GetMmds(Context* context,
                                                 const api::GetMmdsRequest* request,
                                                 google::protobuf::Struct*) {
  if (Unary* refused = Oversized(context, "GetMmds", *request)) return refused;
  return MmdsUnimplemented(context, "GetMmds", request->vm_id());
}

grpc::ServerUnaryReactor* HearthService::PutMmdsConfig(Context* context,
                                                       const api::PutMmdsConfigRequest* request,
                                                       api::MmdsConfig*) {
  if (Unary* refused = Oversized(context, "PutMmdsConfig", *request)) return refused;
  return MmdsUnimplemented(context, "PutMmdsConfig", request->vm_id());
}

grpc::ServerUnaryReactor* HearthService::CreateSnapshot(Context* context,
                                                        const api::CreateSnapshotRequest* request,
                                                        api::CreateSnapshotResponse* response) {
  if (Unary* refused = Oversized(context, "CreateSnapshot", *request)) return refused;
  UnaryCall call(context, metrics_, "CreateSnapshot");
  manager_->CreateSnapshot(request->vm_id(), request->params(), call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::LoadSnapshot(Context* context,
                                                      const api::LoadSnapshotRequest* request,
                                                      api::LoadSnapshotResponse* response) {
  if (Unary* refused = Oversized(context, "LoadSnapshot", *request)) return refused;
  UnaryCall call(context, metrics_, "LoadSnapshot");
  manager_->LoadSnapshot(request->vm_id(), request->params(),
                         [call, response](absl::StatusOr<api::Vm> vm) {
                           if (vm.ok()) *response->mutable_vm() = std::move(*vm);
                           call.Finish(vm.status());
                         });
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::PatchVm(Context* context,
                                                 const api::PatchVmRequest* request,
                                                 api::Vm* response) {
  if (Unary* refused = Oversized(context, "PatchVm", *request)) return refused;
  UnaryCall call(context, metrics_, "PatchVm");
  manager_->SetVmState(request->vm_id(), request->vm_state().state(), call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::GetVmConfig(Context* context,
                                                     const api::GetVmConfigRequest* request,
                                                     api::VmConfig* response) {
  if (Unary* refused = Oversized(context, "GetVmConfig", *request)) return refused;
  UnaryCall call(context, metrics_, "GetVmConfig");
  absl::StatusOr<api::VmConfig> config = manager_->GetConfig(request->vm_id());
  if (config.ok()) *response = std::move(*config);
  return call.Finish(config.status());
}

// ----------------------------------------------------------------------------
// Hearth's own.

grpc::ServerUnaryReactor* HearthService::CreateVm(Context* context,
                                                  const api::CreateVmRequest* request,
                                                  api::Vm* response) {
  if (Unary* refused = Oversized(context, "CreateVm", *request)) return refused;
  UnaryCall call(context, metrics_, "CreateVm");
  manager_->CreateVm(*request, call.Into(response));
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::DeleteVm(Context* context,
                                                  const api::DeleteVmRequest* request,
                                                  api::DeleteVmResponse* response) {
  if (Unary* refused = Oversized(context, "DeleteVm", *request)) return refused;
  UnaryCall call(context, metrics_, "DeleteVm");
  manager_->DeleteVm(request->vm_id(), request->force(),
                     [call, response](absl::StatusOr<bool> deleted) {
                       if (deleted.ok()) response->set_deleted(*deleted);
                       call.Finish(deleted.status());
                     });
  return call.reactor();
}

grpc::ServerUnaryReactor* HearthService::GetVm(Context* context, const api::GetVmRequest* request,
                                               api::Vm* response) {
  if (Unary* refused = Oversized(context, "GetVm", *request)) return refused;
  UnaryCall call(context, metrics_, "GetVm");
  absl::StatusOr<api::Vm> vm = manager_->GetVm(request->vm_id());
  if (vm.ok()) *response = std::move(*vm);
  return call.Finish(vm.status());
}

grpc::ServerUnaryReactor* HearthService::ListVms(Context* context,
                                                 const api::ListVmsRequest* request,
                                                 api::ListVmsResponse* response) {
  if (Unary* refused = Oversized(context, "ListVms", *request)) return refused;
  UnaryCall call(context, metrics_, "ListVms");
  absl::StatusOr<api::ListVmsResponse> list = manager_->ListVms(*request);
  if (list.ok()) *response = std::move(*list);
  return call.Finish(list.status());
}

grpc::ServerUnaryReactor* HearthService::GetHostInfo(Context* context,
                                                     const api::GetHostInfoRequest*,
                                                     api::HostInfo* response) {
  UnaryCall call(context, metrics_, "GetHostInfo");
  *response = manager_->GetHostInfo();
  return call.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* HearthService::CloneVm(Context* context,
                                                 const api::CloneVmRequest* request,
                                                 api::CloneVmResponse* response) {
  if (Unary* refused = Oversized(context, "CloneVm", *request)) return refused;
  UnaryCall call(context, metrics_, "CloneVm");
  manager_->CloneVm(*request, call.Into(response));
  return call.reactor();
}

}  // namespace hearth::agent
