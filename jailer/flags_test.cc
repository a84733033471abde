#include "jailer/flags.h"

#include <sys/resource.h>

#include "gtest/gtest.h"

namespace hearth::jailer {
namespace {

std::vector<std::string> Base() {
  return {"hearth-jailer", "--id",  "vm-1",  "--exec-file", "/usr/bin/hearth-vmm",
          "--uid",         "10000", "--gid", "10000"};
}

absl::StatusOr<JailerConfig> Parse(std::vector<std::string> extra) {
  std::vector<std::string> args = Base();
  args.insert(args.end(), extra.begin(), extra.end());
  return ParseFlags(args);
}

void ExpectError(std::vector<std::string> args, const std::string& text) {
  absl::StatusOr<JailerConfig> config = ParseFlags(args);
  ASSERT_FALSE(config.ok()) << text;
  EXPECT_NE(config.status().message().find(text), absl::string_view::npos) << config.status();
}

TEST(Flags, MinimalConfigAndDefaults) {
  JailerConfig c = *Parse({});
  EXPECT_EQ(c.id, "vm-1");
  EXPECT_EQ(c.uid, 10000u);
  EXPECT_EQ(c.chroot_base_dir, "/srv/jailer");
  EXPECT_EQ(c.parent_cgroup, "hearth-vmm");
  EXPECT_EQ(c.cgroup_version, 1);
  EXPECT_EQ(c.JailRoot(), "/srv/jailer/hearth-vmm/vm-1/root");
  ASSERT_EQ(c.resource_limits.size(), 1u);  // Firecracker's no-file default
  EXPECT_EQ(c.resource_limits[0].resource, RLIMIT_NOFILE);
  EXPECT_EQ(c.resource_limits[0].value, 2048u);
}

TEST(Flags, EverythingAndRepeatsAndVmmArgs) {
  JailerConfig c = *Parse({"--chroot-base-dir=/tmp/j",
                           "--netns",
                           "/var/run/netns/n",
                           "--daemonize",
                           "--new-pid-ns",
                           "--cgroup",
                           "memory.limit_in_bytes=1000",
                           "--cgroup",
                           "pids.max=10",
                           "--cgroup-version",
                           "2",
                           "--parent-cgroup",
                           "hearth/vms",
                           "--resource-limit",
                           "fsize=100",
                           "--resource-limit",
                           "no-file=64",
                           "--keep-fd",
                           "3",
                           "--keep-fd=7",
                           "--",
                           "--control_fd=3",
                           "--seccomp"});
  EXPECT_TRUE(c.daemonize);
  EXPECT_TRUE(c.new_pid_ns);
  ASSERT_EQ(c.cgroups.size(), 2u);
  EXPECT_EQ(c.cgroups[0].controller(), "memory");
  EXPECT_EQ(c.cgroups[1].value, "10");
  EXPECT_EQ(c.cgroup_version, 2);
  EXPECT_EQ(c.parent_cgroup, "hearth/vms");
  EXPECT_EQ(c.resource_limits.size(), 2u);  // no default added: no-file given
  EXPECT_EQ(c.keep_fds, (std::vector<int>{3, 7}));
  EXPECT_EQ(c.exec_args, (std::vector<std::string>{"--control_fd=3", "--seccomp"}));
  EXPECT_EQ(c.JailRoot(), "/tmp/j/hearth-vmm/vm-1/root");
}

TEST(Flags, EveryBadValueNamesItsFlag) {
  std::vector<std::string> no_id = {"j", "--exec-file", "/x", "--uid", "1", "--gid", "1"};
  ExpectError(no_id, "--id: is required");
  ExpectError({"j", "--id", "a", "--uid", "1", "--gid", "1"}, "--exec-file: is required");
  ExpectError({"j", "--id", "a", "--exec-file", "/x", "--gid", "1"}, "--uid: is required");
  ExpectError({"j", "--id", "a", "--exec-file", "/x", "--uid", "1"}, "--gid: is required");
  auto with = [](std::vector<std::string> extra) {
    std::vector<std::string> args = Base();
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  ExpectError(with({"--id", "bad_id!"}), "--id: \"bad_id!\" must match");
  ExpectError(with({"--id", std::string(65, 'a')}), "--id:");
  ExpectError(with({"--exec-file", "relative"}), "--exec-file: must be an absolute path");
  ExpectError(with({"--uid", "x"}), "--uid: \"x\" is not a number");
  ExpectError(with({"--uid", "0"}), "--uid: the VMM must not run as root");
  ExpectError(with({"--gid", "0"}), "--gid:");
  ExpectError(with({"--cgroup", "nonsense"}), "--cgroup: \"nonsense\" is not FILE=VALUE");
  ExpectError(with({"--cgroup", "../memory.max=1"}), "--cgroup:");
  ExpectError(with({"--cgroup-version", "3"}), "--cgroup-version: \"3\" is not 1 or 2");
  ExpectError(with({"--parent-cgroup", "../escape"}), "--parent-cgroup:");
  ExpectError(with({"--resource-limit", "cpu=1"}), "--resource-limit: \"cpu=1\"");
  ExpectError(with({"--resource-limit", "fsize=big"}), "--resource-limit: \"big\"");
  ExpectError(with({"--keep-fd", "1"}), "--keep-fd: fds 0-2 are always kept");
  ExpectError(with({"--netns", "netns"}), "--netns: must be an absolute path");
  ExpectError(with({"--daemonize=yes"}), "--daemonize: takes no value");
  ExpectError(with({"--uid"}), "--uid: needs a value");
  ExpectError(with({"--bogus"}), "unknown flag --bogus");
  ExpectError(with({"stray"}), "unexpected argument \"stray\"");
}

}  // namespace
}  // namespace hearth::jailer
