// HearthService's streams (service_streams.cc): WatchVms and StreamConsole.
#include <unistd.h>

#include <string>

#include "agent/testing/service_fixture.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;
using testing::ServiceTest;
using testing::WaitFor;

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
