// Snapshot and restore in hearth-vmm, driven over the control channel as the
// agent drives it: the test guest's `counter` scenario keeps a count in RAM
// and writes it to its disk; after pause -> snapshot -> kill -> restore into
// a fresh VMM it must go on from the same count without booting again, its
// disk still working, including a request it had queued but not yet
// notified when the snapshot was taken. Diff snapshots merged onto their
// base give the same memory as a Full one; damaged or mismatched files are
// refused before anything is restored; one snapshot restores into several
// VMMs that then run independently.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/vmm_connection.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/subprocess.h"

extern char** environ;

namespace hearth::testing {
namespace {

namespace control = ::hearth::vmm::v1;
using agent::VmmConnection;

constexpr uint32_t kMemMib = 64;
constexpr size_t kDiskBytes = 2 << 20;  // 4096 sectors; the guest writes 1000..1063

int OpenOrDie(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0) << path << ": " << std::strerror(errno);
  return fd;
}

// One hearth-vmm in agent mode, its control channel and its console.
class Vmm {
 public:
  static std::unique_ptr<Vmm> Start() {
    auto vmm = std::unique_ptr<Vmm>(new Vmm());
    int sockets[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets), 0);
    std::vector<std::string> argv = {Runfile("vmm/hearth-vmm"), "--control_fd=3"};
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sockets[1], 3);
    EXPECT_EQ(posix_spawn(&vmm->pid_, args[0], &actions, nullptr, args.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(sockets[1]);
    vmm->connection_ = std::make_unique<VmmConnection>(MessageChannel(UniqueFd(sockets[0])));
    absl::StatusOr<control::Event> ready = vmm->connection_->WaitForEvent(absl::Seconds(30));
    EXPECT_TRUE(ready.ok() && ready->has_ready()) << ready.status();
    return vmm;
  }
  ~Vmm() { Kill(); }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  control::Response Call(control::Request request, std::vector<int> fds = {}) {
    absl::StatusOr<control::Response> response =
        connection_->Call(std::move(request), fds, absl::Seconds(60));
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : control::Response();
  }

  // A fresh console socket pair: our end kept, the VMM's returned.
  int NewConsole() {
    int pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    console_.Reset(pair[0]);
    return pair[1];
  }

  control::Response Boot(const std::string& args, const std::string& disk, bool track_dirty) {
    control::Request request;
    control::Boot* boot = request.mutable_boot();
    hearth::v1::VmConfig* config = boot->mutable_config();
    config->mutable_boot_source()->set_kernel_image_path("(fd)");
    config->mutable_boot_source()->set_boot_args("console=ttyS0 hearth.test=counter " + args);
    config->mutable_machine_config()->set_mem_size_mib(kMemMib);
    config->mutable_machine_config()->set_track_dirty_pages(track_dirty);
    std::vector<int> fds = {OpenOrDie(Runfile("tests/guest/guest.elf"), O_RDONLY), NewConsole()};
    boot->mutable_fds()->set_kernel(0);
    boot->mutable_fds()->set_console(1);
    if (!disk.empty()) {
      hearth::v1::Drive* drive = config->add_drives();
      drive->set_drive_id("data");
      drive->set_path_on_host("(fd)");
      fds.push_back(OpenOrDie(disk, O_RDWR));
      (*boot->mutable_fds()->mutable_drives())["data"] = 2;
    }
    control::Response response = Call(request, fds);
    for (int fd : fds) ::close(fd);
    return response;
  }

  control::Response Load(const std::string& state, const std::string& memory,
                         const std::string& disk, bool resume, bool track_dirty = false) {
    control::Request request;
    control::LoadSnapshot* load = request.mutable_load_snapshot();
    load->set_resume_vm(resume);
    load->set_track_dirty_pages(track_dirty);
    std::vector<int> fds = {OpenOrDie(state, O_RDONLY), OpenOrDie(memory, O_RDONLY), NewConsole()};
    load->mutable_fds()->set_snapshot_state(0);
    load->mutable_fds()->set_snapshot_memory(1);
    load->mutable_fds()->set_console(2);
    if (!disk.empty()) {
      fds.push_back(OpenOrDie(disk, O_RDWR));
      (*load->mutable_fds()->mutable_drives())["data"] = 3;
    }
    control::Response response = Call(request, fds);
    for (int fd : fds) ::close(fd);
    return response;
  }

  control::Response Simple(void (*set)(control::Request*)) {
    control::Request request;
    set(&request);
    return Call(request);
  }
  control::Response Pause() {
    return Simple([](control::Request* r) { r->mutable_pause(); });
  }
  control::Response Resume() {
    return Simple([](control::Request* r) { r->mutable_resume(); });
  }
  control::Response Info() {
    return Simple([](control::Request* r) { r->mutable_get_info(); });
  }

  control::Response Snapshot(const std::string& type, const std::string& state,
                             const std::string& memory) {
    control::Request request;
    request.mutable_create_snapshot()->set_snapshot_type(type);
    int s = OpenOrDie(state, O_RDWR | O_CREAT | O_TRUNC);
    int m = OpenOrDie(memory, O_RDWR | O_CREAT | O_TRUNC);
    control::Response response = Call(request, {s, m});
    ::close(s);
    ::close(m);
    return response;
  }

  // Reads console output until it contains `text` (after `from`).
  bool WaitFor(const std::string& text, absl::Duration timeout = absl::Seconds(60),
               size_t from = 0) {
    absl::Time deadline = absl::Now() + timeout;
    while (out_.find(text, std::min(from, out_.size())) == std::string::npos) {
      if (absl::Now() > deadline) return false;
      ReadFor(absl::Milliseconds(50));
    }
    return true;
  }
  void ReadFor(absl::Duration duration) {
    absl::Time deadline = absl::Now() + duration;
    while (absl::Now() < deadline) {
      struct pollfd pfd = {console_.get(), POLLIN, 0};
      int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (::poll(&pfd, 1, std::max(left, 1)) <= 0) continue;
      char buffer[4096];
      ssize_t n = ::read(console_.get(), buffer, sizeof(buffer));
      if (n <= 0) return;
      for (ssize_t i = 0; i < n; ++i) {
        if (buffer[i] != '\r') out_.push_back(buffer[i]);
      }
    }
  }
  void Type(const std::string& text) { (void)!::write(console_.get(), text.data(), text.size()); }
  // The largest "counter: n=N" seen.
  uint64_t LastCount() const {
    uint64_t last = 0;
    for (absl::string_view line : absl::StrSplit(out_, '\n')) {
      if (!absl::ConsumePrefix(&line, "counter: n=")) continue;
      uint64_t n;
      if (absl::SimpleAtoi(line.substr(0, line.find(' ')), &n)) last = std::max(last, n);
    }
    return last;
  }
  const std::string& out() const { return out_; }
  pid_t pid() const { return pid_; }

 private:
  Vmm() = default;
  pid_t pid_ = -1;
  std::unique_ptr<VmmConnection> connection_;
  UniqueFd console_;
  std::string out_;
};

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HEARTH_REQUIRE_KVM();
    dir_ = MakeTempDir("snapshot");
    disk_ = dir_ + "/disk.img";
    ASSERT_TRUE(WriteFile(disk_, std::string(kDiskBytes, '\0')).ok());
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  // The count written in `sector` of the disk, or 0.
  uint64_t CountOnDisk(const std::string& disk, uint64_t n) const {
    int fd = OpenOrDie(disk, O_RDONLY);
    char sector[512];
    (void)!::pread(fd, sector, sizeof(sector), static_cast<off_t>((1000 + n % 64) * 512));
    ::close(fd);
    if (std::memcmp(sector, "HEARTH-COUNT    ", 16) != 0) return 0;
    uint64_t value;
    std::memcpy(&value, sector + 16, sizeof(value));
    return value;
  }

  std::string dir_;
  std::string disk_;
};

TEST_F(SnapshotTest, RestoredGuestContinuesFromTheSameCount) {
  auto vmm = Vmm::Start();
  ASSERT_EQ(vmm->Boot("hearth.tick_ms=50", disk_, false).code(), 0);
  ASSERT_TRUE(vmm->WaitFor("counter: n=5 blk=ok")) << vmm->out();
  ASSERT_EQ(vmm->Pause().code(), 0);
  vmm->ReadFor(absl::Milliseconds(200));
  uint64_t at_snapshot = vmm->LastCount();
  control::Response created = vmm->Snapshot("Full", Path("state"), Path("memory"));
  ASSERT_EQ(created.code(), 0) << created.message();
  EXPECT_GT(created.snapshot_created().state_bytes(), 0u);
  EXPECT_GT(created.snapshot_created().pages_written(), 0u);
  EXPECT_LT(created.snapshot_created().memory_bytes(), uint64_t{kMemMib} << 20)
      << "zero pages are left out";
  vmm->Kill();

  auto restored = Vmm::Start();
  control::Response loaded = restored->Load(Path("state"), Path("memory"), disk_, true);
  ASSERT_EQ(loaded.code(), 0) << loaded.message();
  EXPECT_EQ(restored->Info().info().state(), control::VM_STATE_RUNNING);
  ASSERT_TRUE(restored->WaitFor(absl::StrCat("counter: n=", at_snapshot + 3, " blk=ok")))
      << "after the snapshot at n=" << at_snapshot << ":\n"
      << restored->out();
  EXPECT_FALSE(absl::StrContains(restored->out(), "counter: boot")) << "the guest booted again";
  EXPECT_FALSE(absl::StrContains(restored->out(), "HEARTH-TEST-FAIL")) << restored->out();
  EXPECT_EQ(CountOnDisk(disk_, at_snapshot + 3), at_snapshot + 3) << "the disk still takes writes";
  restored->Type("still here\n");
  EXPECT_TRUE(restored->WaitFor("counter: echo still here")) << restored->out();
}

TEST_F(SnapshotTest, RequestQueuedAtSnapshotTimeCompletesAfterRestore) {
  auto vmm = Vmm::Start();
  ASSERT_EQ(vmm->Boot("hearth.tick_ms=50 hearth.queue_ms=3000", disk_, false).code(), 0);
  ASSERT_TRUE(vmm->WaitFor("counter: n=1 queued")) << vmm->out();
  // The write of n=1 sits in the available ring; the device has not been
  // notified of it.
  ASSERT_EQ(vmm->Pause().code(), 0);
  ASSERT_EQ(vmm->Snapshot("Full", Path("state"), Path("memory")).code(), 0);
  EXPECT_EQ(CountOnDisk(disk_, 1), 0u) << "the device took the request before its kick";
  vmm->Kill();

  auto restored = Vmm::Start();
  ASSERT_EQ(restored->Load(Path("state"), Path("memory"), disk_, true).code(), 0);
  ASSERT_TRUE(restored->WaitFor("counter: n=1 blk=ok", absl::Seconds(60))) << restored->out();
  EXPECT_EQ(CountOnDisk(disk_, 1), 1u);
  ASSERT_TRUE(restored->WaitFor("counter: n=2 queued")) << restored->out();
  EXPECT_FALSE(absl::StrContains(restored->out(), "counter: boot"));
}

TEST_F(SnapshotTest, PausedRestoreWaitsForResume) {
  auto vmm = Vmm::Start();
  ASSERT_EQ(vmm->Boot("hearth.tick_ms=50", "", false).code(), 0);
  ASSERT_TRUE(vmm->WaitFor("counter: n=3")) << vmm->out();
  ASSERT_EQ(vmm->Pause().code(), 0);
  ASSERT_EQ(vmm->Snapshot("Full", Path("state"), Path("memory")).code(), 0);
  vmm->Kill();
  auto restored = Vmm::Start();
  ASSERT_EQ(restored->Load(Path("state"), Path("memory"), "", false).code(), 0);
  EXPECT_EQ(restored->Info().info().state(), control::VM_STATE_PAUSED);
  restored->ReadFor(absl::Milliseconds(500));
  EXPECT_EQ(restored->out(), "") << "a paused restore ran the guest";
  ASSERT_EQ(restored->Resume().code(), 0);
  ASSERT_TRUE(restored->WaitFor("counter: n=")) << restored->out();
  EXPECT_FALSE(absl::StrContains(restored->out(), "counter: boot"));
}

TEST_F(SnapshotTest, DiffMergedOntoItsBaseRestoresTheSameState) {
  auto vmm = Vmm::Start();
  ASSERT_EQ(vmm->Boot("hearth.tick_ms=50", disk_, true).code(), 0);
  ASSERT_TRUE(vmm->WaitFor("counter: n=3 blk=ok")) << vmm->out();
  ASSERT_EQ(vmm->Pause().code(), 0);
  control::Response diff_first = vmm->Snapshot("Diff", Path("d0.state"), Path("d0.memory"));
  EXPECT_EQ(diff_first.code(), static_cast<int>(absl::StatusCode::kFailedPrecondition))
      << "a Diff needs a base";
  ASSERT_EQ(vmm->Snapshot("Full", Path("base.state"), Path("base.memory")).code(), 0);
  ASSERT_EQ(vmm->Resume().code(), 0);
  uint64_t base_count = vmm->LastCount();
  ASSERT_TRUE(vmm->WaitFor(absl::StrCat("counter: n=", base_count + 4, " blk=ok"))) << vmm->out();
  ASSERT_EQ(vmm->Pause().code(), 0);
  vmm->ReadFor(absl::Milliseconds(200));
  uint64_t at_diff = vmm->LastCount();
  control::Response diff = vmm->Snapshot("Diff", Path("diff.state"), Path("diff.memory"));
  ASSERT_EQ(diff.code(), 0) << diff.message();
  // A Full snapshot of the same moment, to compare the merge with.
  ASSERT_EQ(vmm->Snapshot("Full", Path("full.state"), Path("full.memory")).code(), 0);
  uint64_t total_pages = (uint64_t{kMemMib} << 20) / 4096;
  EXPECT_LT(diff.snapshot_created().pages_written(), total_pages / 4)
      << "a Diff holds only the pages written since the base";
  vmm->Kill();

  absl::StatusOr<ProcessResult> merged = RunProcess(
      {Runfile("vmm/snapshot/hearth-snapshot"), "merge", Path("base.memory"), Path("diff.state"),
       Path("diff.memory"), Path("merged.state"), Path("merged.memory")},
      absl::Seconds(60));
  ASSERT_TRUE(merged.ok());
  ASSERT_EQ(merged->exit_code, 0) << merged->err;
  absl::StatusOr<std::string> a = ReadFile(Path("merged.memory"));
  absl::StatusOr<std::string> b = ReadFile(Path("full.memory"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  EXPECT_TRUE(*a == *b) << "base + Diff differs from a Full snapshot of the same moment";

  auto refused = Vmm::Start();
  control::Response unmerged = refused->Load(Path("diff.state"), Path("diff.memory"), disk_, true);
  EXPECT_NE(unmerged.code(), 0);
  EXPECT_TRUE(absl::StrContains(unmerged.message(), "merge")) << unmerged.message();
  refused->Kill();

  auto restored = Vmm::Start();
  ASSERT_EQ(restored->Load(Path("merged.state"), Path("merged.memory"), disk_, true).code(), 0);
  ASSERT_TRUE(restored->WaitFor(absl::StrCat("counter: n=", at_diff + 2, " blk=ok")))
      << restored->out();
  EXPECT_FALSE(absl::StrContains(restored->out(), "counter: boot"));
}

TEST_F(SnapshotTest, DamagedOrMismatchedFilesAreRefusedAndTheVmmStillLoads) {
  auto vmm = Vmm::Start();
  ASSERT_EQ(vmm->Boot("hearth.tick_ms=50", disk_, false).code(), 0);
  ASSERT_TRUE(vmm->WaitFor("counter: n=2")) << vmm->out();
  ASSERT_EQ(vmm->Pause().code(), 0);
  ASSERT_EQ(vmm->Snapshot("Full", Path("state"), Path("memory")).code(), 0);
  vmm->Kill();
  absl::StatusOr<std::string> good = ReadFile(Path("state"));
  ASSERT_TRUE(good.ok());

  std::string flipped = *good;
  flipped[flipped.size() / 2] ^= 0x40;
  std::string other_version = *good;
  other_version[4] = 7;
  struct Case {
    std::string name;
    std::string state;
    std::string memory;
    std::string mentions;
  };
  ASSERT_TRUE(WriteFile(Path("small.memory"), std::string(4096, '\0')).ok());
  ASSERT_TRUE(WriteFile(Path("small.disk"), std::string(512 * 8, '\0')).ok());
  std::vector<Case> cases = {
      {"flipped byte", flipped, Path("memory"), "corrupt"},
      {"truncated", good->substr(0, good->size() - 10), Path("memory"), "truncated"},
      {"other version", other_version, Path("memory"), "version 7"},
      {"not a snapshot", "#!/bin/sh\necho hello\n", Path("memory"), "not a Hearth snapshot"},
      {"other memory file", *good, Path("small.memory"), "not this snapshot's memory"},
  };
  auto target = Vmm::Start();
  for (const Case& c : cases) {
    ASSERT_TRUE(WriteFile(Path("bad.state"), c.state).ok());
    control::Response r = target->Load(Path("bad.state"), c.memory, disk_, true);
    EXPECT_NE(r.code(), 0) << c.name << " was accepted";
    EXPECT_TRUE(absl::StrContains(r.message(), c.mentions)) << c.name << ": " << r.message();
    EXPECT_EQ(target->Info().info().state(), control::VM_STATE_WAITING) << c.name;
  }
  // A drive of another size than the snapshot's.
  control::Response wrong_disk =
      target->Load(Path("state"), Path("memory"), Path("small.disk"), true);
  EXPECT_NE(wrong_disk.code(), 0);
  EXPECT_TRUE(absl::StrContains(wrong_disk.message(), "sectors")) << wrong_disk.message();
  target->Kill();
  // The good files still restore.
  auto restored = Vmm::Start();
  ASSERT_EQ(restored->Load(Path("state"), Path("memory"), disk_, true).code(), 0);
  ASSERT_TRUE(restored->WaitFor("blk=ok")) << restored->out();
}

TEST_F(SnapshotTest, OneSnapshotRestoresIntoIndependentClones) {
  auto vmm = Vmm::Start();
  ASSERT_EQ(vmm->Boot("hearth.tick_ms=50", disk_, false).code(), 0);
  ASSERT_TRUE(vmm->WaitFor("counter: n=2 blk=ok")) << vmm->out();
  ASSERT_EQ(vmm->Pause().code(), 0);
  ASSERT_EQ(vmm->Snapshot("Full", Path("state"), Path("memory")).code(), 0);
  vmm->Kill();
  constexpr int kClones = 4;
  std::vector<std::unique_ptr<Vmm>> clones;
  for (int i = 0; i < kClones; ++i) {
    std::string disk = Path(absl::StrCat("clone", i, ".img"));
    absl::StatusOr<std::string> contents = ReadFile(disk_);
    ASSERT_TRUE(contents.ok());
    ASSERT_TRUE(WriteFile(disk, *contents).ok());
    clones.push_back(Vmm::Start());
    ASSERT_EQ(clones.back()->Load(Path("state"), Path("memory"), disk, true).code(), 0);
  }
  for (int i = 0; i < kClones; ++i) clones[i]->Type(absl::StrCat("i am clone ", i, "\n"));
  for (int i = 0; i < kClones; ++i) {
    ASSERT_TRUE(clones[i]->WaitFor(absl::StrCat("counter: echo i am clone ", i)))
        << clones[i]->out();
    ASSERT_TRUE(clones[i]->WaitFor("blk=ok")) << clones[i]->out();
    for (int j = 0; j < kClones; ++j) {
      if (j == i) continue;
      EXPECT_FALSE(absl::StrContains(clones[i]->out(), absl::StrCat("i am clone ", j)));
    }
    EXPECT_FALSE(absl::StrContains(clones[i]->out(), "counter: boot"));
  }
  // Each clone's disk got its own writes, and the snapshot stayed intact.
  absl::StatusOr<std::string> memory = ReadFile(Path("memory"));
  ASSERT_TRUE(memory.ok());
  EXPECT_EQ(memory->size(), uint64_t{kMemMib} << 20);
}

}  // namespace
}  // namespace hearth::testing
