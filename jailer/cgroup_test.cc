#include "jailer/cgroup.h"

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace hearth::jailer {
namespace {

// An in-memory tree: files with contents, directories, and a record of
// every write in order. Writes to cgroup.subtree_control can be made to
// fail like the kernel's "no internal processes" rule.
class FakeFilesystem : public Filesystem {
 public:
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return absl::NotFoundError(path);
    return it->second;
  }
  absl::Status WriteFile(const std::string& path, const std::string& contents) override {
    if (failing_writes.count(path)) return absl::ResourceExhaustedError("EBUSY " + path);
    size_t slash = path.rfind('/');
    if (!IsDirectory(path.substr(0, slash))) return absl::NotFoundError(path);
    writes.push_back(path + " <- " + contents);
    files[path] = contents;
    return absl::OkStatus();
  }
  absl::Status MakeDirectory(const std::string& path, mode_t) override {
    if (dirs.count(path)) return absl::AlreadyExistsError(path);
    dirs.insert(path);
    // A new cgroup comes with its control files, cpuset ones empty.
    files[path + "/cpuset.cpus"] = "";
    files[path + "/cpuset.mems"] = "";
    files[path + "/cgroup.controllers"] =
        files[path.substr(0, path.rfind('/')) + "/cgroup.subtree_control"];
    files[path + "/cgroup.subtree_control"] = "";
    return absl::OkStatus();
  }
  bool IsDirectory(const std::string& path) override { return dirs.count(path) != 0; }

  std::map<std::string, std::string> files;
  std::set<std::string> dirs = {"/sys", "/sys/fs", "/sys/fs/cgroup"};
  std::set<std::string> failing_writes;
  std::vector<std::string> writes;
};

constexpr char kV1Mounts[] =
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
    "cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
    "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";

JailerConfig Config(std::vector<CgroupSetting> settings, int version = 1) {
  JailerConfig config;
  config.id = "vm1";
  config.parent_cgroup = "hearth";
  config.cgroups = std::move(settings);
  config.cgroup_version = version;
  return config;
}

TEST(Cgroup, ParsesMounts) {
  std::vector<CgroupMount> mounts = ParseCgroupMounts(kV1Mounts);
  ASSERT_EQ(mounts.size(), 6u);
  EXPECT_EQ(mounts[0].path, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(mounts[0].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_TRUE(mounts[4].controllers.empty());  // name=systemd only
  EXPECT_TRUE(mounts[5].v2);
}

TEST(Cgroup, V1DirectoriesPerController) {
  auto dirs = CgroupDirectories(ParseCgroupMounts(kV1Mounts),
                                Config({{"memory.limit_in_bytes", "1"}, {"cpu.shares", "2"}}));
  ASSERT_TRUE(dirs.ok());
  EXPECT_EQ(*dirs, (std::vector<std::string>{"/sys/fs/cgroup/cpu,cpuacct/hearth/vm1",
                                             "/sys/fs/cgroup/memory/hearth/vm1"}));
  EXPECT_FALSE(CgroupDirectories(ParseCgroupMounts(kV1Mounts), Config({{"rdma.max", "1"}})).ok());
}

TEST(Cgroup, V1WritesValuesThenMovesThePid) {
  FakeFilesystem fs;
  fs.files["/proc/self/mounts"] = kV1Mounts;
  for (const char* d : {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"}) fs.dirs.insert(d);
  ASSERT_TRUE(
      SetUpCgroups(&fs, Config({{"memory.limit_in_bytes", "134217728"}, {"pids.max", "64"}}), 4242)
          .ok());
  EXPECT_EQ(fs.writes, (std::vector<std::string>{
                           "/sys/fs/cgroup/memory/hearth/vm1/memory.limit_in_bytes <- 134217728",
                           "/sys/fs/cgroup/memory/hearth/vm1/tasks <- 4242",
                           "/sys/fs/cgroup/pids/hearth/vm1/pids.max <- 64",
                           "/sys/fs/cgroup/pids/hearth/vm1/tasks <- 4242"}));
}

TEST(Cgroup, V1CpusetInheritsCpusAndMems) {
  FakeFilesystem fs;
  fs.files["/proc/self/mounts"] = kV1Mounts;
  fs.dirs.insert("/sys/fs/cgroup/cpuset");
  fs.files["/sys/fs/cgroup/cpuset/cpuset.cpus"] = "0-1\n";
  fs.files["/sys/fs/cgroup/cpuset/cpuset.mems"] = "0\n";
  ASSERT_TRUE(SetUpCgroups(&fs, Config({{"cpuset.cpus", "1"}}), 7).ok());
  EXPECT_EQ(fs.files["/sys/fs/cgroup/cpuset/hearth/cpuset.cpus"], "0-1");
  EXPECT_EQ(fs.files["/sys/fs/cgroup/cpuset/hearth/cpuset.mems"], "0");
  EXPECT_EQ(fs.files["/sys/fs/cgroup/cpuset/hearth/vm1/cpuset.mems"], "0");
  EXPECT_EQ(fs.files["/sys/fs/cgroup/cpuset/hearth/vm1/cpuset.cpus"], "1");  // the setting wins
  EXPECT_EQ(fs.files["/sys/fs/cgroup/cpuset/hearth/vm1/tasks"], "7");
}

TEST(Cgroup, V1MissingHierarchyIsNamed) {
  FakeFilesystem fs;
  fs.files["/proc/self/mounts"] = kV1Mounts;
  absl::Status s = SetUpCgroups(&fs, Config({{"hugetlb.2MB.limit_in_bytes", "0"}}), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), "\"hugetlb\"")) << s;
}

constexpr char kV2Mounts[] = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n";

TEST(Cgroup, V2EnablesControllersDownTheTreeThenMovesThePid) {
  FakeFilesystem fs;
  fs.files["/proc/self/mounts"] = kV2Mounts;
  fs.files["/sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu io memory pids\n";
  fs.files["/sys/fs/cgroup/cgroup.subtree_control"] = "cpu memory pids\n";
  JailerConfig config =
      Config({{"memory.max", "134217728"}, {"pids.max", "64"}, {"cpu.max", "100000 100000"}}, 2);
  ASSERT_TRUE(SetUpCgroups(&fs, config, 99).ok());
  EXPECT_EQ(fs.writes,
            (std::vector<std::string>{// root: already enabled, nothing written
                                      "/sys/fs/cgroup/hearth/cgroup.subtree_control <- +cpu",
                                      "/sys/fs/cgroup/hearth/cgroup.subtree_control <- +memory",
                                      "/sys/fs/cgroup/hearth/cgroup.subtree_control <- +pids",
                                      "/sys/fs/cgroup/hearth/vm1/memory.max <- 134217728",
                                      "/sys/fs/cgroup/hearth/vm1/pids.max <- 64",
                                      "/sys/fs/cgroup/hearth/vm1/cpu.max <- 100000 100000",
                                      "/sys/fs/cgroup/hearth/vm1/cgroup.procs <- 99"}));
}

TEST(Cgroup, V2UnavailableControllerAndBusyParentAreExplained) {
  FakeFilesystem fs;
  fs.files["/proc/self/mounts"] = kV2Mounts;
  fs.files["/sys/fs/cgroup/cgroup.controllers"] = "memory pids\n";
  fs.files["/sys/fs/cgroup/cgroup.subtree_control"] = "memory pids\n";
  absl::Status s = SetUpCgroups(&fs, Config({{"cpu.max", "max"}}, 2), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "controller \"cpu\" is not available")) << s;

  FakeFilesystem busy;
  busy.files["/proc/self/mounts"] = kV2Mounts;
  busy.files["/sys/fs/cgroup/cgroup.controllers"] = "memory\n";
  busy.files["/sys/fs/cgroup/cgroup.subtree_control"] = "memory\n";
  busy.failing_writes.insert("/sys/fs/cgroup/hearth/cgroup.subtree_control");
  s = SetUpCgroups(&busy, Config({{"memory.max", "1"}}, 2), 1);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "cannot enable controllers")) << s;
}

TEST(Cgroup, V2NeedsACgroup2Mount) {
  FakeFilesystem fs;
  fs.files["/proc/self/mounts"] = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
  EXPECT_EQ(SetUpCgroups(&fs, Config({{"memory.max", "1"}}, 2), 1).code(),
            absl::StatusCode::kNotFound);
}

TEST(Cgroup, NoSettingsNoCgroup) {
  FakeFilesystem fs;  // not even a mounts file
  EXPECT_TRUE(SetUpCgroups(&fs, Config({}), 1).ok());
}

}  // namespace
}  // namespace hearth::jailer
