// HearthService: Firecracker's resources (service_resources.cc).
#include <unistd.h>

#include <string>

#include "agent/testing/service_fixture.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
using testing::ServiceTest;
using testing::WaitFor;

TEST_F(ServiceTest, RequiredFieldsAreCheckedBeforeTheManager) {
  fake_->Add("vm1", api::VM_STATE_CONFIGURING);
  grpc::ClientContext context;
  api::PutMachineConfigRequest request;
  request.set_vm_id("vm1");
  request.mutable_machine_config()->set_vcpu_count(1);
  api::MachineConfig response;
  grpc::Status status = stub_->PutMachineConfig(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "machine_config.mem_size_mib: required");
  EXPECT_TRUE(fake_->calls().empty());
}

TEST_F(ServiceTest, PathsOutsideTheRootsAreRefused) {
  fake_->Add("vm1", api::VM_STATE_CONFIGURING);
  grpc::ClientContext context;
  api::PutBootSourceRequest request;
  request.set_vm_id("vm1");
  request.mutable_boot_source()->set_kernel_image_path("/etc/passwd");
  api::BootSource response;
  grpc::Status status = stub_->PutBootSource(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("boot_source.kernel_image_path"), std::string::npos);
  EXPECT_TRUE(fake_->calls().empty());

  grpc::ClientContext ok_context;
  request.mutable_boot_source()->set_kernel_image_path(dir_ + "/vmlinux");
  ASSERT_TRUE(stub_->PutBootSource(&ok_context, request, &response).ok());
  EXPECT_EQ(response.kernel_image_path(), dir_ + "/vmlinux");
  EXPECT_EQ(fake_->GetConfig("vm1")->boot_source().kernel_image_path(), dir_ + "/vmlinux");
}

TEST_F(ServiceTest, RefusedOutputFileCallsCreateNoFile) {
  // No VM "ghost": the calls are refused, and no file appears.
  grpc::ClientContext logger_context;
  api::PutLoggerRequest logger;
  logger.set_vm_id("ghost");
  logger.mutable_logger()->set_log_path(dir_ + "/ghost.log");
  api::Logger logger_response;
  EXPECT_EQ(stub_->PutLogger(&logger_context, logger, &logger_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext metrics_context;
  api::PutMetricsRequest metrics;
  metrics.set_vm_id("ghost");
  metrics.mutable_metrics()->set_metrics_path(dir_ + "/ghost.metrics");
  api::Metrics metrics_response;
  EXPECT_EQ(stub_->PutMetrics(&metrics_context, metrics, &metrics_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext serial_context;
  api::PutSerialRequest serial;
  serial.set_vm_id("ghost");
  serial.mutable_serial()->set_serial_out_path(dir_ + "/ghost.serial");
  api::Serial serial_response;
  EXPECT_EQ(stub_->PutSerial(&serial_context, serial, &serial_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  for (const char* name : {"/ghost.log", "/ghost.metrics", "/ghost.serial"}) {
    EXPECT_NE(::access((dir_ + name).c_str(), F_OK), 0) << name;
  }
}

TEST_F(ServiceTest, PutDriveReplacesTheDriveWithTheSameId) {
  fake_->Add("vm1", api::VM_STATE_CONFIGURING);
  for (bool read_only : {false, true}) {
    grpc::ClientContext context;
    api::PutDriveRequest request;
    request.set_vm_id("vm1");
    request.mutable_drive()->set_drive_id("root");
    request.mutable_drive()->set_path_on_host(dir_ + "/vmlinux");
    request.mutable_drive()->set_is_root_device(true);
    request.mutable_drive()->set_is_read_only(read_only);
    api::Drive response;
    ASSERT_TRUE(stub_->PutDrive(&context, request, &response).ok());
  }
  api::VmConfig config = *fake_->GetConfig("vm1");
  ASSERT_EQ(config.drives_size(), 1);
  EXPECT_TRUE(config.drives(0).is_read_only());
}

TEST_F(ServiceTest, InstanceInfoAndBalloonChecks) {
  api::VmConfig spec;
  spec.mutable_machine_config()->set_mem_size_mib(128);
  spec.mutable_balloon()->set_amount_mib(0);
  fake_->Add("vm1", api::VM_STATE_RUNNING, spec);
  grpc::ClientContext info_context;
  api::GetInstanceInfoRequest info_request;
  info_request.set_vm_id("vm1");
  api::InstanceInfo info;
  ASSERT_TRUE(stub_->GetInstanceInfo(&info_context, info_request, &info).ok());
  EXPECT_EQ(info.state(), "Running");
  EXPECT_EQ(info.app_name(), "hearth");

  grpc::ClientContext context;
  api::PatchBalloonRequest request;
  request.set_vm_id("vm1");
  request.mutable_balloon()->set_amount_mib(129);
  api::Balloon balloon;
  grpc::Status status = stub_->PatchBalloon(&context, request, &balloon);
  EXPECT_EQ(status.error_message(), "balloon.amount_mib: 129 MiB is more than the guest's 128 MiB");

  grpc::ClientContext stats_context;
  api::GetBalloonStatisticsRequest stats_request;
  stats_request.set_vm_id("vm1");
  api::BalloonStatistics stats;
  status = stub_->GetBalloonStatistics(&stats_context, stats_request, &stats);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace hearth::agent
