// The minimal Linux kernel on Hearth's virtio devices: root file system on
// virtio-blk (/dev/vda, no initramfs), a virtio-net device on a tap in a
// private network namespace, and virtio-rng. On a PVM host the kernel is
// checked up to "Run /sbin/init" plus the devices' own counters (Linux's
// drivers activated them); on a hardware-KVM host the root file system's
// init must also write /hearth-init-ran into the image, which the test
// reads back with debugfs. Slow (about a minute on PVM); needs root.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/testing/host.h"
#include "tests/testing/linux_guest.h"
#include "tests/testing/netns.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/vmm_process.h"

namespace hearth {
namespace {

using testing::KvmKind;

double Counter(const std::string& metrics_line, const std::string& device,
               const std::string& counter) {
  google::protobuf::Struct metrics;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(metrics_line, &metrics).ok());
  auto d = metrics.fields().find(device);
  if (d == metrics.fields().end()) return -1;
  auto c = d->second.struct_value().fields().find(counter);
  return c == d->second.struct_value().fields().end() ? -1 : c->second.number_value();
}

TEST(LinuxVirtio, RootOnVirtioBlkWithNetAndRng) {
  HEARTH_REQUIRE_KVM();
  HEARTH_REQUIRE_ROOT();
  std::optional<testing::LinuxGuest> guest = testing::FindLinuxGuest();
  if (!guest.has_value()) GTEST_SKIP();
  KvmKind kind = testing::DetectKvm();
  std::string dir = testing::MakeTempDir("linux-virtio-");
  std::string rootfs = dir + "/rootfs.ext4";
  ASSERT_TRUE(testing::WriteFile(rootfs, *testing::ReadFile(guest->dir + "/rootfs.ext4")).ok());
  std::string metrics = dir + "/metrics.json";
  absl::StatusOr<testing::TapNamespace> ns =
      testing::TapNamespace::Create(absl::StrCat("hearth-lnx-", ::getpid()), "htap0");
  ASSERT_TRUE(ns.ok()) << ns.status();
  std::string config =
      absl::StrCat(R"({"boot-source": {"kernel_image_path": ")", guest->dir,
                   R"(/vmlinux", "boot_args": ")", testing::LinuxBootArgs(kind, "root=/dev/vda rw"),
                   R"("}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}, )",
                   R"("drives": [{"drive_id": "rootfs", "path_on_host": ")", rootfs,
                   R"(", "is_root_device": true}], )",
                   R"("network-interfaces": [{"iface_id": "eth0", "host_dev_name": "htap0", )",
                   R"("guest_mac": "06:00:ac:10:00:02"}], "entropy": {}, )",
                   R"("metrics": {"metrics_path": ")", metrics, R"("}})");
  auto vmm = testing::StartVmm(config, ns->ExecPrefix());
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  testing::ProcessResult r = vmm->Wait(absl::Minutes(6));
  std::printf("host %s: %s in %s\n--- last console lines ---\n%s\n", testing::KvmKindName(kind),
              r.Describe().c_str(), absl::FormatDuration(r.elapsed).c_str(),
              r.out.substr(r.out.size() > 2000 ? r.out.size() - 2000 : 0).c_str());
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(absl::StrContains(r.out, "virtio_blk virtio0: [vda] 16384 512-byte logical blocks"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "EXT4-fs (vda): mounted filesystem")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "VFS: Mounted root (ext4 filesystem)")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "Run /sbin/init as init process")) << r.out;
  testing::ExpectLinuxEnded(kind, r, "Run /sbin/init as init process");
  // Linux's virtio_net and virtio-rng drivers set their devices up at probe
  // time; the block device moved the root file system's blocks.
  absl::StatusOr<std::string> lines = testing::ReadFile(metrics);
  ASSERT_TRUE(lines.ok());
  std::vector<std::string> all = absl::StrSplit(*lines, '\n', absl::SkipEmpty());
  ASSERT_FALSE(all.empty());
  EXPECT_GE(Counter(all.back(), "block_rootfs", "read_bytes"), 8 * 1024) << all.back();
  EXPECT_GE(Counter(all.back(), "block_rootfs", "requests"), 5) << all.back();
  EXPECT_GE(Counter(all.back(), "net_eth0", "activations"), 1) << all.back();
  EXPECT_GE(Counter(all.back(), "rng", "activations"), 1) << all.back();
  EXPECT_EQ(Counter(all.back(), "block_rootfs", "invalid_chains"), 0) << all.back();
  if (kind == KvmKind::kHardware) {
    EXPECT_TRUE(absl::StrContains(r.out, "HEARTH-LINUX-ROOTFS-OK")) << r.out;
    absl::StatusOr<testing::ProcessResult> cat = testing::RunProcess(
        {"/usr/sbin/debugfs", "-R", "cat /hearth-init-ran", rootfs}, absl::Seconds(30));
    ASSERT_TRUE(cat.ok());
    EXPECT_TRUE(absl::StrContains(cat->out, "written by the guest's init")) << cat->out;
  } else {
    std::printf(
        "PVM host: user space cannot run here; checked the kernel up to "
        "'Run /sbin/init' and the devices' counters\n");
  }
}

}  // namespace
}  // namespace hearth
