// hearth-vmm's control channel from the agent's side, without a jail: the
// Ready event, every request before and after Boot, and a peer that sends
// garbage. The VMM must answer everything and never crash.
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/vmm_connection.h"
#include "common/fd_passing.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/subprocess.h"

namespace hearth {
namespace {

namespace control = ::hearth::vmm::v1;
using agent::VmmConnection;
using testing::Runfile;

class VmmControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HEARTH_REQUIRE_KVM();
    int sockets[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets), 0);
    raw_ = sockets[0];
    std::vector<std::string> argv = {Runfile("vmm/hearth-vmm"), "--control_fd=3"};
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sockets[1], 3);
    ASSERT_EQ(posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(sockets[1]);
    connection_ = std::make_unique<VmmConnection>(MessageChannel(UniqueFd(sockets[0])));
    absl::StatusOr<control::Event> ready = connection_->WaitForEvent(absl::Seconds(30));
    ASSERT_TRUE(ready.ok()) << ready.status();
    ASSERT_TRUE(ready->has_ready());
    EXPECT_EQ(ready->ready().protocol_version(), 1u);
    EXPECT_EQ(ready->ready().state(), control::VM_STATE_WAITING);
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  control::Response Call(control::Request request, std::vector<int> fds = {}) {
    absl::StatusOr<control::Response> response =
        connection_->Call(std::move(request), fds, absl::Seconds(30));
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : control::Response();
  }
  control::Response Boot(const std::string& args) {
    control::Request request;
    control::Boot* boot = request.mutable_boot();
    boot->mutable_config()->mutable_boot_source()->set_kernel_image_path("(fd)");
    boot->mutable_config()->mutable_boot_source()->set_boot_args("console=ttyS0 " + args);
    boot->mutable_config()->mutable_machine_config()->set_mem_size_mib(64);
    boot->mutable_fds()->set_kernel(0);
    boot->mutable_fds()->set_console(1);
    int kernel = ::open(Runfile("tests/guest/guest.elf").c_str(), O_RDONLY | O_CLOEXEC);
    int pair[2];
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
    console_.Reset(pair[0]);
    control::Response response = Call(request, {kernel, pair[1]});
    ::close(kernel);
    ::close(pair[1]);
    return response;
  }
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  pid_t pid_ = -1;
  int raw_ = -1;
  UniqueFd console_;
  std::unique_ptr<VmmConnection> connection_;
};

TEST_F(VmmControlTest, RequestsBeforeBootAreRefusedByState) {
  control::Request pause;
  pause.mutable_pause();
  control::Response r = Call(pause);
  EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(absl::StrContains(r.message(), "not booted")) << r.message();
  control::Request info;
  info.mutable_get_info();
  r = Call(info);
  EXPECT_EQ(r.code(), 0);
  EXPECT_EQ(r.info().state(), control::VM_STATE_WAITING);
  EXPECT_EQ(r.info().pid(), pid_);
  control::Request empty;  // no operation at all
  r = Call(empty);
  EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
}

TEST_F(VmmControlTest, GarbageIsAnsweredAndTheChannelSurvives) {
  // Raw datagrams bypassing the framing: each gets an error response with
  // id 0 and a message saying what was wrong.
  for (const std::string& junk :
       {std::string("x"), std::string(16, '\0'),
        MessageChannel::EncodeHeader(7, control::KIND_REQUEST, 0, 0),
        MessageChannel::EncodeHeader(1, control::KIND_REQUEST, 5, 0) + "\xff\xff\xff\xff\xff",
        MessageChannel::EncodeHeader(1, control::KIND_EVENT, 0, 0),
        MessageChannel::EncodeHeader(1, control::KIND_REQUEST, 0, 1)}) {
    ASSERT_TRUE(SendWithFds(raw_, junk, {}).ok());
    absl::Status read;
    std::optional<control::Response> response;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!(response = connection_->TakeResponse(0)) && absl::Now() < deadline) {
      read = connection_->ReadAvailable();
      ::usleep(1000);
    }
    ASSERT_TRUE(response.has_value()) << "no answer to junk of " << junk.size() << " bytes";
    EXPECT_NE(response->code(), 0);
    EXPECT_FALSE(response->message().empty());
  }
  control::Request info;
  info.mutable_get_info();
  EXPECT_EQ(Call(info).code(), 0);
}

TEST_F(VmmControlTest, BootWithoutItsFdsFailsCleanly) {
  control::Request request;
  request.mutable_boot()->mutable_config()->mutable_boot_source()->set_kernel_image_path("x");
  request.mutable_boot()->mutable_fds()->set_kernel(3);  // no fd 3 in the message
  control::Response r = Call(request);
  EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(absl::StrContains(r.message(), "no fd for the kernel")) << r.message();
}

// Info's times count from the VMM's start (control.proto), not from Boot:
// a Boot sent 200 ms after the start shows both times beyond that.
TEST_F(VmmControlTest, InfoTimesCountFromTheVmmStart) {
  absl::SleepFor(absl::Milliseconds(200));
  control::Response booted = Boot("hearth.test=cpu_loop hearth.iterations=4000000000");
  ASSERT_EQ(booted.code(), 0) << booted.message();
  control::Request info;
  info.mutable_get_info();
  control::Response r = Call(info);
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (r.info().first_output_us() < 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    r = Call(info);
  }
  EXPECT_GE(r.info().boot_us(), 200000);
  EXPECT_GE(r.info().first_output_us(), 200000);
}

TEST_F(VmmControlTest, BootedVmPausesResumesReportsAndShutsDown) {
  control::Response booted = Boot("hearth.test=cpu_loop hearth.iterations=4000000000");
  ASSERT_EQ(booted.code(), 0) << booted.message();
  EXPECT_EQ(booted.info().state(), control::VM_STATE_RUNNING);
  absl::StatusOr<control::Event> running = connection_->WaitForEvent(absl::Seconds(10));
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->state_changed().state(), control::VM_STATE_RUNNING);
  EXPECT_EQ(Boot("x").code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));

  control::Request pause, resume, info, metrics;
  pause.mutable_pause();
  resume.mutable_resume();
  info.mutable_get_info();
  metrics.mutable_flush_metrics();
  EXPECT_EQ(Call(pause).code(), 0);
  EXPECT_EQ(Call(info).info().state(), control::VM_STATE_PAUSED);
  EXPECT_EQ(Call(pause).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(Call(resume).code(), 0);
  EXPECT_EQ(Call(info).info().state(), control::VM_STATE_RUNNING);
  EXPECT_EQ(Call(resume).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  control::Response m = Call(metrics);
  EXPECT_EQ(m.code(), 0);
  EXPECT_TRUE(absl::StrContains(m.metrics().json(), "\"vcpu\"")) << m.metrics().json();
  control::Request patch;
  patch.mutable_patch_drive()->set_drive_id("nope");
  EXPECT_EQ(Call(patch).code(), static_cast<int>(absl::StatusCode::kNotFound));
  control::Request balloon;
  balloon.mutable_patch_balloon()->set_amount_mib(1);
  EXPECT_EQ(Call(balloon).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));

  control::Request shutdown;
  shutdown.mutable_shutdown();
  EXPECT_EQ(Call(shutdown).code(), 0);
  absl::StatusOr<control::Event> exit_event = connection_->WaitForEvent(absl::Seconds(30));
  ASSERT_TRUE(exit_event.ok()) << exit_event.status();
  ASSERT_TRUE(exit_event->has_guest_exit());
  EXPECT_EQ(exit_event->guest_exit().kind(), control::GuestExit::KIND_STOPPED);
  int status = Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(VmmControlTest, GuestResetIsReportedAndConsoleFlows) {
  ASSERT_EQ(Boot("hearth.test=reset").code(), 0);
  absl::StatusOr<control::Event> event;
  do {
    event = connection_->WaitForEvent(absl::Seconds(30));
    ASSERT_TRUE(event.ok()) << event.status();
  } while (!event->has_guest_exit());
  EXPECT_EQ(event->guest_exit().kind(), control::GuestExit::KIND_RESET);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(console_.get(), buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  EXPECT_TRUE(absl::StrContains(out, "HEARTH-TEST-PASS reset")) << out;
  int status = Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(VmmControlTest, AgentGoingAwayLeavesTheGuestRunning) {
  ASSERT_EQ(Boot("hearth.test=cpu_loop hearth.iterations=4000000000").code(), 0);
  connection_.reset();  // EOF on the VMM's side
  ::usleep(200 * 1000);
  int status = 0;
  EXPECT_EQ(::waitpid(pid_, &status, WNOHANG), 0) << "the VMM exited when the agent left";
}

}  // namespace
}  // namespace hearth
