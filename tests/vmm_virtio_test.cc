// The virtio devices of the real hearth-vmm against the test guest's
// drivers on real /dev/kvm: block (data in the host file, read-only,
// flushed data surviving SIGKILL), rng, balloon, vsock both ways, net
// through a tap in a private network namespace, interrupts, and the hostile
// scenario set, whose damage is checked in the VMM's own counters.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/linux_guest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/vmm_process.h"

namespace hearth {
namespace {

using testing::ProcessResult;
using testing::Runfile;

constexpr char kGuest[] = "tests/guest/guest.elf";

// A guest config: scenario, extra kernel arguments, and extra top-level
// JSON members (devices), with metrics written to `metrics_path`.
std::string Config(const std::string& scenario, const std::string& extra_args,
                   const std::string& devices, const std::string& metrics_path, int mem_mib = 128) {
  return absl::StrCat(R"({"boot-source": {"kernel_image_path": ")", Runfile(kGuest),
                      R"(", "boot_args": "console=ttyS0 hearth.test=)", scenario, " ", extra_args,
                      R"("}, "machine-config": {"vcpu_count": 1, "mem_size_mib": )", mem_mib,
                      R"(}, "metrics": {"metrics_path": ")", metrics_path, R"("})",
                      devices.empty() ? "" : ", ", devices, "}");
}

// Sector s: "HEARTH-SECTOR   " + s (u32 LE) + (s + j) & 0xff for the rest.
std::string Sector(uint32_t s) {
  std::string sector = "HEARTH-SECTOR   ";
  sector.append(reinterpret_cast<const char*>(&s), 4);
  for (size_t j = sector.size(); j < 512; ++j) sector.push_back(static_cast<char>((s + j) & 0xff));
  return sector;
}

std::string MakeDisk(const std::string& path, uint32_t sectors) {
  std::string image;
  for (uint32_t s = 0; s < sectors; ++s) image += Sector(s);
  EXPECT_TRUE(testing::WriteFile(path, image).ok());
  return image;
}

// The last metrics line the VMM wrote, as a JSON Struct.
google::protobuf::Struct ReadMetrics(const std::string& path) {
  google::protobuf::Struct metrics;
  absl::StatusOr<std::string> text = testing::ReadFile(path);
  EXPECT_TRUE(text.ok()) << path;
  if (!text.ok()) return metrics;
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  EXPECT_FALSE(lines.empty());
  if (lines.empty()) return metrics;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(lines.back(), &metrics).ok())
      << lines.back();
  return metrics;
}

uint64_t Counter(const google::protobuf::Struct& metrics, const std::string& device,
                 const std::string& counter) {
  auto d = metrics.fields().find(device);
  if (d == metrics.fields().end()) {
    ADD_FAILURE() << "no device " << device << " in metrics";
    return 0;
  }
  auto c = d->second.struct_value().fields().find(counter);
  if (c == d->second.struct_value().fields().end()) {
    ADD_FAILURE() << "no counter " << device << "." << counter;
    return 0;
  }
  return static_cast<uint64_t>(c->second.number_value());
}

class VirtioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::DetectKvm() == testing::KvmKind::kNone) {
      testing::PrintSkipped("/dev/kvm is not available");
      GTEST_SKIP();
    }
    dir_ = testing::MakeTempDir("virtio-");
    metrics_ = dir_ + "/metrics.json";
  }
  ProcessResult Boot(const std::string& config) {
    return testing::RunVmm(config, absl::Seconds(120));
  }
  void ExpectPass(const ProcessResult& r, const std::string& scenario) {
    EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-TEST-PASS " + scenario)) << "stdout:\n"
                                                                          << r.out << "\nstderr:\n"
                                                                          << r.err;
    EXPECT_EQ(r.exit_code, 0) << r.Describe() << "\n" << r.err;
  }
  std::string dir_;
  std::string metrics_;
};

TEST_F(VirtioTest, BlockReadsWritesFlushesAndHonoursReadOnly) {
  std::string rw = dir_ + "/rw.img", ro = dir_ + "/ro.img";
  MakeDisk(rw, 2048);
  std::string ro_before = MakeDisk(ro, 2048);
  ProcessResult r = Boot(Config(
      "blk", "",
      absl::StrCat(R"("drives": [{"drive_id": "data", "path_on_host": ")", rw,
                   R"(", "is_root_device": false}, {"drive_id": "ro-disk", "path_on_host": ")", ro,
                   R"(", "is_root_device": false, "is_read_only": true}])"),
      metrics_));
  ExpectPass(r, "blk");
  EXPECT_TRUE(absl::StrContains(r.out, "blk0 id=data capacity=2048 ro=0")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "blk1 id=ro-disk capacity=2048 ro=1")) << r.out;
  std::string after = *testing::ReadFile(rw);
  EXPECT_EQ(after.substr(100 * 512, 16), "HEARTH-WRITTEN  ");
  EXPECT_EQ(after.substr(99 * 512, 512), Sector(99));
  EXPECT_EQ(*testing::ReadFile(ro), ro_before) << "read-only image changed";
  google::protobuf::Struct m = ReadMetrics(metrics_);
  EXPECT_GE(Counter(m, "block_data", "requests"), 5u);
  EXPECT_GE(Counter(m, "block_data", "write_bytes"), 512u);
  EXPECT_GE(Counter(m, "block_ro-disk", "errors"), 1u);  // the refused write
  EXPECT_EQ(Counter(m, "block_data", "invalid_chains"), 0u);
}

TEST_F(VirtioTest, FlushedDataSurvivesSigkill) {
  std::string rw = dir_ + "/rw.img";
  MakeDisk(rw, 2048);
  auto vmm =
      testing::StartVmm(Config("blk_flush_then_hang", "hearth.blk_write_sector=77",
                               absl::StrCat(R"("drives": [{"drive_id": "data", "path_on_host": ")",
                                            rw, R"(", "is_root_device": false}])"),
                               metrics_));
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  ASSERT_TRUE(vmm->WaitForOutput("HEARTH-BLK-FLUSHED", absl::Seconds(60))) << vmm->out();
  vmm->Kill(SIGKILL);
  ProcessResult r = vmm->Wait(absl::Seconds(10));
  EXPECT_TRUE(r.signaled && r.signal == SIGKILL) << r.Describe();
  EXPECT_EQ(testing::ReadFile(rw)->substr(77 * 512, 16), "HEARTH-WRITTEN  ");
}

TEST_F(VirtioTest, CompletionsArriveByInterrupt) {
  std::string rw = dir_ + "/rw.img";
  MakeDisk(rw, 2048);
  ProcessResult r = Boot(Config("irq", "",
                                absl::StrCat(R"("drives": [{"drive_id": "data", "path_on_host": ")",
                                             rw, R"(", "is_root_device": false}])"),
                                metrics_));
  ExpectPass(r, "irq");
  EXPECT_GE(Counter(ReadMetrics(metrics_), "block_data", "interrupts"), 1u);
}

TEST_F(VirtioTest, Rng) {
  ProcessResult r = Boot(Config("rng", "", R"("entropy": {})", metrics_));
  ExpectPass(r, "rng");
  EXPECT_GE(Counter(ReadMetrics(metrics_), "rng", "read_bytes"), 128u);
}

TEST_F(VirtioTest, RngRateLimiterThrottles) {
  // One request per 100 ms after a burst of 1: the guest's two reads take
  // a throttled pause, and the counter says so.
  ProcessResult r = Boot(
      Config("rng", "", R"("entropy": {"rate_limiter": {"ops": {"size": 1, "refill_time": 100}}})",
             metrics_));
  ExpectPass(r, "rng");
  EXPECT_GE(Counter(ReadMetrics(metrics_), "rng", "throttled"), 1u);
}

TEST_F(VirtioTest, BalloonInflatesDeflatesAndReportsStatistics) {
  ProcessResult r = Boot(Config(
      "balloon", "",
      R"("balloon": {"amount_mib": 4, "deflate_on_oom": true, "stats_polling_interval_s": 1})",
      metrics_));
  ExpectPass(r, "balloon");
  google::protobuf::Struct m = ReadMetrics(metrics_);
  EXPECT_EQ(Counter(m, "balloon", "inflated_pages"), 1024u);
  EXPECT_EQ(Counter(m, "balloon", "deflated_pages"), 512u);
  EXPECT_GE(Counter(m, "balloon", "stats_updates"), 2u);
  EXPECT_EQ(Counter(m, "balloon", "bad_pfns"), 0u);
}

// A thread that is joined when it goes out of scope, even on a failed
// assertion's early return.
class JoiningThread {
 public:
  explicit JoiningThread(std::thread thread) : thread_(std::move(thread)) {}
  ~JoiningThread() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

// Listens on a unix socket and runs `serve` on the first connection, giving
// up after 60 s without one.
std::thread ServeOnce(const std::string& path, std::function<void(int)> serve) {
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_LT(path.size(), sizeof(address.sun_path));
  EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(listener, 1), 0);
  return std::thread([listener, serve] {
    struct pollfd pfd = {listener, POLLIN, 0};
    int fd = ::poll(&pfd, 1, 60000) == 1 ? ::accept(listener, nullptr, nullptr) : -1;
    ::close(listener);
    if (fd >= 0) {
      serve(fd);
      ::close(fd);
    }
  });
}

std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (line.size() < 256 && ::read(fd, &c, 1) == 1) {
    line.push_back(c);
    if (c == '\n') break;
  }
  return line;
}

void WriteAll(int fd, const std::string& text) {
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
}

TEST_F(VirtioTest, VsockBothDirections) {
  testing::ScopedTempDir sockets("hearth-vsock-");  // unix socket paths: 108 bytes
  std::string uds = sockets.path() + "/v.sock";
  std::string guest_said;
  JoiningThread host_listener(ServeOnce(uds + "_5678", [&](int fd) {
    guest_said = ReadLine(fd);
    WriteAll(fd, "hello-from-host\n");
    // Keep the connection until the guest closes it.
    char c;
    while (::read(fd, &c, 1) > 0) {
    }
  }));
  auto vmm = testing::StartVmm(
      Config("vsock", "", absl::StrCat(R"("vsock": {"guest_cid": 3, "uds_path": ")", uds, R"("})"),
             metrics_));
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  ASSERT_TRUE(vmm->WaitForOutput("HEARTH-VSOCK-LISTENING", absl::Seconds(60))) << vmm->out();
  // Host-initiated: Firecracker's CONNECT/OK handshake on uds_path.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, uds.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  WriteAll(fd, "CONNECT 1234\n");
  std::string ok = ReadLine(fd);
  EXPECT_TRUE(absl::StartsWith(ok, "OK ")) << ok;
  WriteAll(fd, "ping-from-host\n");
  EXPECT_EQ(ReadLine(fd), "pong-from-guest\n");
  ProcessResult r = vmm->Wait(absl::Seconds(60));
  ::close(fd);
  EXPECT_EQ(guest_said, "hello-from-guest\n");
  ExpectPass(r, "vsock");
  google::protobuf::Struct m = ReadMetrics(metrics_);
  EXPECT_EQ(Counter(m, "vsock", "connections_opened"), 2u);
  EXPECT_EQ(Counter(m, "vsock", "invalid_chains"), 0u);
}

TEST_F(VirtioTest, VsockRefusesBadHandshakes) {
  testing::ScopedTempDir sockets("hearth-vsock-");  // unix socket paths: 108 bytes
  std::string uds = sockets.path() + "/v.sock";
  // Accepts the guest's connection and says nothing, so the guest waits
  // (and the VM lives) while the bad handshakes below run.
  JoiningThread silent_host(ServeOnce(uds + "_5678", [](int fd) {
    char c;
    while (::read(fd, &c, 1) > 0) {
    }
  }));
  auto vmm = testing::StartVmm(
      Config("vsock", "hearth.timeout_ms=3000",
             absl::StrCat(R"("vsock": {"guest_cid": 3, "uds_path": ")", uds, R"("})"), metrics_));
  ASSERT_TRUE(vmm.ok());
  ASSERT_TRUE(vmm->WaitForOutput("vsock: guest_cid=3", absl::Seconds(60))) << vmm->out();
  for (const char* bad : {"HELLO\n", "CONNECT x\n", "CONNECT 99999999999\n",
                          "CONNECT 1234 and a lot more than a line should hold\n"}) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, uds.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    WriteAll(fd, bad);
    EXPECT_EQ(ReadLine(fd), "") << "expected the VMM to hang up on " << bad;
    ::close(fd);
  }
  ProcessResult r = vmm->Wait(absl::Seconds(60));
  // The silent host makes the guest's own scenario time out and fail; the
  // point is that the VMM survived the bad handshakes.
  EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-TEST-FAIL vsock")) << r.out;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(Counter(ReadMetrics(metrics_), "vsock", "connections_refused"), 4u);
}

TEST_F(VirtioTest, HostileGuestIsContained) {
  std::string rw = dir_ + "/rw.img", ro = dir_ + "/ro.img";
  MakeDisk(rw, 2048);
  std::string ro_before = MakeDisk(ro, 2048);
  ProcessResult r = Boot(Config(
      "hostile", "",
      absl::StrCat(R"("drives": [{"drive_id": "data", "path_on_host": ")", rw,
                   R"(", "is_root_device": false}, {"drive_id": "ro-disk", "path_on_host": ")", ro,
                   R"(", "is_root_device": false, "is_read_only": true}], "entropy": {})"),
      metrics_));
  ExpectPass(r, "hostile");
  for (const char* attack :
       {"desc_outside_ram", "desc_addr_wrap", "chain_loop", "next_out_of_range",
        "readable_after_writable", "indirect_bad_len", "indirect_outside_ram", "write_read_only",
        "config_oob", "notify_before_driver_ok", "rings_outside_ram", "avail_idx_jump",
        "rng_desc_outside_ram", "rng_readable_buffer"}) {
    EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("HEARTH-HOSTILE ", attack, " ok")))
        << attack << "\n"
        << r.out;
  }
  EXPECT_EQ(*testing::ReadFile(ro), ro_before);
  google::protobuf::Struct m = ReadMetrics(metrics_);
  EXPECT_GE(Counter(m, "block_data", "invalid_chains"), 7u);
  EXPECT_GE(Counter(m, "block_data", "broken_queues"), 1u);
  EXPECT_GE(Counter(m, "transport_block_data", "activation_failures"), 1u);
  EXPECT_GE(Counter(m, "transport_block_data", "notifications_before_ready"), 1u);
  // Every interrupt reached KVM, hostile guest or not.
  EXPECT_EQ(Counter(m, "transport_block_data", "interrupt_failures"), 0u);
  EXPECT_GE(Counter(m, "block_ro-disk", "errors"), 1u);
  EXPECT_GE(Counter(m, "rng", "invalid_chains"), 1u);
}

}  // namespace
}  // namespace hearth
