// HearthService: what it checks itself for every call (field sizes), how it
// passes the manager's statuses on, its own RPCs and MMDS.
#include <unistd.h>

#include <string>

#include "agent/testing/service_fixture.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
using testing::ServiceTest;
using testing::WaitFor;

TEST_F(ServiceTest, ManagerStatusesPassThroughWithTheirCodes) {
  fake_->Add("vm1", api::VM_STATE_RUNNING);
  for (absl::Status error : {absl::FailedPreconditionError("InstanceStart: vm \"vm1\" is RUNNING"),
                             absl::ResourceExhaustedError("the host runs its maximum of 1 VMs"),
                             absl::DeadlineExceededError("the VMM did not answer in time")}) {
    fake_->FailNext(error);
    grpc::ClientContext context;
    api::PutActionRequest request;
    request.set_vm_id("vm1");
    request.mutable_action()->set_action_type("InstanceStart");
    api::PutActionResponse response;
    grpc::Status status = stub_->PutAction(&context, request, &response);
    EXPECT_EQ(static_cast<int>(status.error_code()), static_cast<int>(error.code()));
    EXPECT_EQ(status.error_message(), error.message());
  }
  grpc::ClientContext context;
  api::PutActionRequest request;
  request.set_vm_id("vm1");
  request.mutable_action()->set_action_type("Reboot");
  api::PutActionResponse response;
  grpc::Status status = stub_->PutAction(&context, request, &response);
  EXPECT_EQ(status.error_message(),
            "action.action_type: \"Reboot\" is not one of InstanceStart, SendCtrlAltDel, "
            "FlushMetrics");
}

TEST_F(ServiceTest, HugeFieldsAreRefusedByName) {
  fake_->Add("vm1", api::VM_STATE_CONFIGURING);
  grpc::ClientContext context;
  api::PutVsockRequest request;
  request.set_vm_id("vm1");
  request.mutable_vsock()->set_guest_cid(3);
  request.mutable_vsock()->set_uds_path(dir_ + "/v.sock");
  request.mutable_vsock()->set_vsock_id(std::string(1 << 20, 'x'));
  api::Vsock response;
  grpc::Status status = stub_->PutVsock(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "vsock.vsock_id: 1048576 bytes, at most 4096");
  EXPECT_TRUE(fake_->calls().empty());

  // A label selector of 8 KB: a clear error, not a metadata overflow.
  grpc::ClientContext list_context;
  api::ListVmsRequest list;
  list.set_label_selector(std::string(8000, 'k'));
  api::ListVmsResponse vms;
  status = stub_->ListVms(&list_context, list, &vms);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "label_selector: 8000 bytes, at most 4096");
}

TEST_F(ServiceTest, LongErrorMessagesAreCut) {
  fake_->Add("vm1", api::VM_STATE_RUNNING);
  fake_->FailNext(absl::FailedPreconditionError(std::string(100000, 'e')));
  grpc::ClientContext context;
  api::PutActionRequest request;
  request.set_vm_id("vm1");
  request.mutable_action()->set_action_type("SendCtrlAltDel");
  api::PutActionResponse response;
  grpc::Status status = stub_->PutAction(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_LT(status.error_message().size(), 1100u);
  EXPECT_NE(status.error_message().find("more bytes)"), std::string::npos);
}

TEST_F(ServiceTest, MmdsSaysUnimplementedOrNotFound) {
  fake_->Add("vm1", api::VM_STATE_CONFIGURING);
  for (const char* id : {"vm1", "missing"}) {
    grpc::ClientContext context;
    api::GetMmdsRequest request;
    request.set_vm_id(id);
    google::protobuf::Struct response;
    grpc::Status status = stub_->GetMmds(&context, request, &response);
    EXPECT_EQ(status.error_code(), std::string(id) == "vm1" ? grpc::StatusCode::UNIMPLEMENTED
                                                            : grpc::StatusCode::NOT_FOUND);
  }
}

}  // namespace
}  // namespace hearth::agent
