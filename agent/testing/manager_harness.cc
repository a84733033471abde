#include "agent/testing/manager_harness.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace hearth::agent::testing {

namespace api = ::hearth::v1;

namespace {

// Under /tmp, not Bazel's long TEST_TMPDIR: vsock socket paths in the image
// root must fit a unix socket address (107 bytes).
std::string MakeTempDir() {
  std::string pattern = "/tmp/hearth-manager-XXXXXX";
  char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr);
  return pattern;
}

void RemoveAll(const std::string& dir) {
  std::string command = absl::StrCat("rm -rf '", dir, "'");
  if (std::system(command.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
}

}  // namespace

ManagerOptions ManagerHarness::DefaultOptions() {
  ManagerOptions options;
  options.max_vcpus = 64;
  options.max_memory_mib = 64 * 1024;
  options.max_vms = 64;
  options.call_timeout = absl::Seconds(5);
  options.call_check_interval = absl::Milliseconds(50);
  return options;
}

ManagerHarness::ManagerHarness(ManagerOptions options)
    : options_(std::move(options)), host_(std::make_shared<FakeHost>()) {
  dir_ = MakeTempDir();
  state_dir_ = dir_ + "/state";
  image_root_ = dir_ + "/images";
  EXPECT_EQ(::mkdir(state_dir_.c_str(), 0700), 0);
  EXPECT_EQ(::mkdir(image_root_.c_str(), 0700), 0);
  kernel_ = image_root_ + "/vmlinux";
  std::ofstream(kernel_) << "not really a kernel";
  options_.state_dir = state_dir_;
  options_.image_roots = {image_root_};
  options_.state_write_hook = [disk = disk_](const std::string& path) {
    absl::MutexLock lock(&disk->mutex);
    if (!disk->full || !disk->full(path)) return absl::OkStatus();
    ++disk->failed;
    return absl::ResourceExhaustedError(absl::StrCat("write ", path, ": No space left on device"));
  };
  StartManager();
}

ManagerHarness::~ManagerHarness() {
  manager_.reset();
  // The fake VMMs' threads end with the host.
  host_.reset();
  RemoveAll(dir_);
}

void ManagerHarness::StartManager() {
  absl::StatusOr<std::unique_ptr<VmManager>> manager =
      VmManager::Create(options_, std::make_unique<FakeLauncher>(host_));
  ASSERT_TRUE(manager.ok()) << manager.status();
  manager_ = std::move(*manager);
  absl::Status started = manager_->Start();
  ASSERT_TRUE(started.ok()) << started;
}

void ManagerHarness::SetDiskFull(std::function<bool(const std::string& path)> full) {
  absl::MutexLock lock(&disk_->mutex);
  disk_->full = std::move(full);
}

int ManagerHarness::failed_writes() const {
  absl::MutexLock lock(&disk_->mutex);
  return disk_->failed;
}

void ManagerHarness::Restart() {
  manager_.reset();
  StartManager();
}

api::CreateVmRequest ManagerHarness::CreateRequest(const std::string& vm_id, bool start) const {
  api::CreateVmRequest request;
  request.set_vm_id(vm_id);
  request.set_start(start);
  request.mutable_config()->mutable_boot_source()->set_kernel_image_path(kernel_);
  request.mutable_config()->mutable_machine_config()->set_vcpu_count(1);
  request.mutable_config()->mutable_machine_config()->set_mem_size_mib(128);
  return request;
}

absl::StatusOr<api::Vm> ManagerHarness::Create(const std::string& vm_id, bool start) {
  api::CreateVmRequest request = CreateRequest(vm_id, start);
  return Await<api::Vm>([&](Done<api::Vm> done) { manager_->CreateVm(request, done); });
}

bool ManagerHarness::WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

bool ManagerHarness::WaitForState(const std::string& vm_id, api::VmState state) {
  return WaitFor([&] {
    absl::StatusOr<api::Vm> vm = manager_->GetVm(vm_id);
    return vm.ok() && vm->state() == state;
  });
}

}  // namespace hearth::agent::testing
