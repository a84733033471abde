// ServiceTest: HearthService over real gRPC (an in-process server on a
// unix socket under /tmp) against a FakeVmApi, for the service's tests.
#ifndef HEARTH_AGENT_TESTING_SERVICE_FIXTURE_H_
#define HEARTH_AGENT_TESTING_SERVICE_FIXTURE_H_

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/api_metrics.h"
#include "agent/service.h"
#include "agent/testing/fake_vm_api.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hearth/v1/hearth.grpc.pb.h"

namespace hearth::agent::testing {

namespace api = ::hearth::v1;

inline bool WaitFor(const std::function<bool()>& condition) {
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
    fake_ = std::make_unique<FakeVmApi>(std::move(*roots));
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
  std::unique_ptr<FakeVmApi> fake_;
  std::unique_ptr<HearthService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<api::Hearth::Stub> stub_;
};

}  // namespace hearth::agent::testing

#endif  // HEARTH_AGENT_TESTING_SERVICE_FIXTURE_H_
