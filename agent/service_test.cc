// HearthService over real gRPC (an in-process server on a unix socket)
// against a FakeVmApi: what the service checks itself, how it maps
// statuses, and its two streams.
#include "agent/service.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/testing/fake_vm_api.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hearth/v1/hearth.grpc.pb.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;

bool WaitFor(const std::function<bool()>& condition) {
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/tmp/hearth-service-test-", ::getpid(), "-XXXXXX");
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    std::ofstream(dir_ + "/vmlinux") << "kernel";
    absl::StatusOr<ImageRoots> roots = ImageRoots::Open({dir_});
    ASSERT_TRUE(roots.ok()) << roots.status();
    fake_ = std::make_unique<testing::FakeVmApi>(std::move(*roots));
    service_ = std::make_unique<HearthService>(fake_.get(), &metrics_);
    grpc::ServerBuilder builder;
    std::string address = absl::StrCat("unix:", dir_, "/api.sock");
    builder.AddListeningPort(address, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = api::Hearth::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
    std::string remove = absl::StrCat("rm -rf '", dir_, "'");
    EXPECT_EQ(std::system(remove.c_str()), 0);
  }

  std::string dir_;
  ApiMetrics metrics_;
  std::unique_ptr<testing::FakeVmApi> fake_;
  std::unique_ptr<HearthService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<api::Hearth::Stub> stub_;
};

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

TEST_F(ServiceTest, WatchStreamsEventsAndCutsASlowWatcher) {
  grpc::ClientContext context;
  api::WatchVmsRequest request;
  std::unique_ptr<grpc::ClientReader<api::WatchEvent>> reader = stub_->WatchVms(&context, request);
  ASSERT_TRUE(WaitFor([&] { return fake_->watchers() == 1; }));
  api::WatchEvent event;
  event.set_type(api::WatchEvent::MODIFIED);
  event.mutable_vm()->set_vm_id("vm1");
  event.mutable_vm()->mutable_status()->set_reason(std::string(1000, 'x'));
  // The client reads nothing while far more than the reactor's queue arrives.
  for (int i = 1; i <= 30000; ++i) {
    event.set_resource_version(i);
    fake_->Emit(event);
  }
  api::WatchEvent got;
  uint64_t last = 0;
  int count = 0;
  while (reader->Read(&got)) {
    EXPECT_EQ(got.resource_version(), last + 1);
    last = got.resource_version();
    ++count;
  }
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("watch again from resource_version"), std::string::npos);
  EXPECT_LT(count, 30000);
  EXPECT_GT(count, 0);
  EXPECT_TRUE(WaitFor([&] { return fake_->watchers() == 0; }));
}

TEST_F(ServiceTest, WatchErrorsFinishTheStream) {
  grpc::ClientContext context;
  api::WatchVmsRequest request;
  request.set_resource_version(1000);
  std::unique_ptr<grpc::ClientReader<api::WatchEvent>> reader = stub_->WatchVms(&context, request);
  api::WatchEvent got;
  EXPECT_FALSE(reader->Read(&got));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

TEST_F(ServiceTest, ConsoleReplaysAndForwardsInput) {
  fake_->Add("vm1", api::VM_STATE_RUNNING);
  (*fake_->Console("vm1"))->Append("boot line\n");
  grpc::ClientContext context;
  auto stream = stub_->StreamConsole(&context);
  api::ConsoleRequest open;
  open.mutable_open()->set_vm_id("vm1");
  open.mutable_open()->set_replay(true);
  ASSERT_TRUE(stream->Write(open));
  api::ConsoleChunk chunk;
  ASSERT_TRUE(stream->Read(&chunk));
  EXPECT_EQ(chunk.data(), "boot line\n");
  EXPECT_TRUE(chunk.replay());
  api::ConsoleRequest input;
  input.set_input("ls\n");
  ASSERT_TRUE(stream->Write(input));
  EXPECT_TRUE(WaitFor([&] { return fake_->console_input() == "ls\n"; }));
  (*fake_->Console("vm1"))->Append("live\n");
  ASSERT_TRUE(stream->Read(&chunk));
  EXPECT_EQ(chunk.data(), "live\n");
  EXPECT_FALSE(chunk.replay());
  // The VM ends: the stream ends OK once all output is out.
  (*fake_->Console("vm1"))->Close();
  EXPECT_FALSE(stream->Read(&chunk));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ServiceTest, ConsoleOfAMissingVm) {
  grpc::ClientContext context;
  auto stream = stub_->StreamConsole(&context);
  api::ConsoleRequest open;
  open.mutable_open()->set_vm_id("missing");
  ASSERT_TRUE(stream->Write(open));
  api::ConsoleChunk chunk;
  EXPECT_FALSE(stream->Read(&chunk));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace hearth::agent
