// virtio-net of the real hearth-vmm through a real tap, in a private network
// namespace: the guest's frames reach the tap, frames sent on the tap reach
// the guest, and reception resumes when the guest refills its rx queue
// (a 64-frame burst against 8 posted buffers). Needs root and /dev/kvm.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/netns.h"
#include "tests/testing/vmm_process.h"

namespace hearth {
namespace {

constexpr uint16_t kEtherType = 0x88b5;  // IEEE local experimental
constexpr char kGuestMac[] = "06:00:ac:10:00:02";

// Answers the guest's test frames on the tap (see tests/guest/README.md,
// scenario `net`) until `stop` is set.
void Responder(const testing::TapNamespace& ns, std::atomic<bool>* stop, std::atomic<int>* echoes) {
  ASSERT_TRUE(ns.EnterOnThisThread().ok());
  int fd = ::socket(AF_PACKET, SOCK_RAW, htons(kEtherType));
  ASSERT_GE(fd, 0);
  sockaddr_ll address = {};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(kEtherType);
  address.sll_ifindex = static_cast<int>(::if_nametoindex(ns.tap().c_str()));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  auto send = [&](const uint8_t* dst, const std::string& payload) {
    uint8_t frame[128] = {};
    std::memcpy(frame, dst, 6);
    const uint8_t src[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0x01};
    std::memcpy(frame + 6, src, 6);
    frame[12] = kEtherType >> 8;
    frame[13] = kEtherType & 0xff;
    std::memcpy(frame + 14, payload.data(), payload.size());
    size_t length = std::max<size_t>(60, 14 + payload.size());
    (void)::sendto(fd, frame, length, 0, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  };
  while (!stop->load()) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, 100) != 1) continue;
    uint8_t frame[2048];
    ssize_t n = ::recv(fd, frame, sizeof(frame), 0);
    if (n < 14) continue;
    std::string payload(reinterpret_cast<char*>(frame + 14), static_cast<size_t>(n - 14));
    payload = payload.substr(0, payload.find('\0'));
    if (absl::StartsWith(payload, "HEARTH-NET-TX ")) {
      send(frame + 6, "HEARTH-NET-RX " + payload.substr(14));
      ++*echoes;
    } else if (payload == "HEARTH-NET-BURST-PLEASE") {
      for (int i = 0; i < 64; ++i) send(frame + 6, absl::StrCat("HEARTH-NET-BURST ", i));
    }
  }
  ::close(fd);
}

TEST(VmmNet, FramesBothWaysAndRxResumesAfterRefill) {
  HEARTH_REQUIRE_KVM();
  HEARTH_REQUIRE_ROOT();
  std::string name = absl::StrCat("hearth-net-", ::getpid());
  absl::StatusOr<testing::TapNamespace> ns = testing::TapNamespace::Create(name, "htap0");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::string guest = testing::Runfile("tests/guest/guest.elf");
  std::string config = absl::StrCat(
      R"({"boot-source": {"kernel_image_path": ")", guest,
      R"(", "boot_args": "console=ttyS0 hearth.test=net"}, )",
      R"("machine-config": {"vcpu_count": 1, "mem_size_mib": 128}, )",
      R"("network-interfaces": [{"iface_id": "eth0", "host_dev_name": "htap0", "guest_mac": ")",
      kGuestMac, R"("}]})");
  std::atomic<bool> stop{false};
  std::atomic<int> echoes{0};
  std::thread responder(Responder, std::cref(*ns), &stop, &echoes);
  auto vmm = testing::StartVmm(config, ns->ExecPrefix());
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  testing::ProcessResult r = vmm->Wait(absl::Seconds(60));
  stop = true;
  responder.join();
  EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-TEST-PASS net")) << r.out << r.err;
  EXPECT_EQ(echoes.load(), 4);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace hearth
