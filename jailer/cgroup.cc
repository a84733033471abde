#include "jailer/cgroup.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace hearth::jailer {
namespace {

std::set<std::string> NamedControllers(const JailerConfig& config) {
  std::set<std::string> controllers;
  for (const CgroupSetting& setting : config.cgroups) controllers.insert(setting.controller());
  return controllers;
}

std::string Trim(const std::string& s) { return std::string(absl::StripAsciiWhitespace(s)); }

// A new cpuset group has no CPUs or memory nodes; the ones from `path` down
// to `leaf` get their parent's.
absl::Status InheritCpuset(Filesystem* fs, const std::string& mount, const std::string& leaf) {
  std::string relative = std::string(absl::StripPrefix(leaf, mount));
  std::string current = mount;
  for (absl::string_view part : absl::StrSplit(relative, '/', absl::SkipEmpty())) {
    std::string child = absl::StrCat(current, "/", part);
    for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
      ASSIGN_OR_RETURN(std::string mine, fs->ReadFile(absl::StrCat(child, "/", file)));
      if (!Trim(mine).empty()) continue;
      ASSIGN_OR_RETURN(std::string parents, fs->ReadFile(absl::StrCat(current, "/", file)));
      RETURN_IF_ERROR(fs->WriteFile(absl::StrCat(child, "/", file), Trim(parents)));
    }
    current = child;
  }
  return absl::OkStatus();
}

absl::Status SetUpV1(Filesystem* fs, const std::vector<CgroupMount>& mounts,
                     const JailerConfig& config, pid_t pid) {
  for (const std::string& controller : NamedControllers(config)) {
    ASSIGN_OR_RETURN(std::string dir,
                     CgroupDirectory(mounts, 1, controller, config.parent_cgroup, config.id));
    RETURN_IF_ERROR(MakeDirectories(fs, dir, 0755));
    if (controller == "cpuset") {
      RETURN_IF_ERROR(InheritCpuset(fs, FindCgroupV1(mounts, controller)->path, dir));
    }
    for (const CgroupSetting& setting : config.cgroups) {
      if (setting.controller() != controller) continue;
      RETURN_IF_ERROR(fs->WriteFile(absl::StrCat(dir, "/", setting.file), setting.value));
    }
    RETURN_IF_ERROR(fs->WriteFile(absl::StrCat(dir, "/tasks"), absl::StrCat(pid)));
  }
  return absl::OkStatus();
}

absl::Status SetUpV2(Filesystem* fs, const std::vector<CgroupMount>& mounts,
                     const JailerConfig& config, pid_t pid) {
  ASSIGN_OR_RETURN(std::string dir,
                   CgroupDirectory(mounts, 2, "", config.parent_cgroup, config.id));
  RETURN_IF_ERROR(MakeDirectories(fs, dir, 0755));
  // Enable each named controller in every ancestor's subtree_control.
  std::set<std::string> controllers = NamedControllers(config);
  std::string current = FindCgroupV2(mounts)->path;
  std::vector<std::string> parts =
      absl::StrSplit(absl::StrCat(config.parent_cgroup, "/", config.id), '/', absl::SkipEmpty());
  for (size_t i = 0; i < parts.size(); ++i) {
    ASSIGN_OR_RETURN(std::string available,
                     fs->ReadFile(absl::StrCat(current, "/cgroup.controllers")));
    ASSIGN_OR_RETURN(std::string enabled,
                     fs->ReadFile(absl::StrCat(current, "/cgroup.subtree_control")));
    std::set<std::string> have = absl::StrSplit(Trim(available), ' ', absl::SkipEmpty());
    std::set<std::string> on = absl::StrSplit(Trim(enabled), ' ', absl::SkipEmpty());
    for (const std::string& controller : controllers) {
      if (have.count(controller) == 0) {
        return absl::FailedPreconditionError(absl::StrCat("cgroup v2: controller \"", controller,
                                                          "\" is not available in ", current));
      }
      if (on.count(controller) != 0) continue;
      absl::Status status = fs->WriteFile(absl::StrCat(current, "/cgroup.subtree_control"),
                                          absl::StrCat("+", controller));
      if (!status.ok()) {
        return absl::Status(status.code(), absl::StrCat(status.message(),
                                                        " (a cgroup with processes in it "
                                                        "cannot enable controllers for its "
                                                        "children)"));
      }
    }
    current = absl::StrCat(current, "/", parts[i]);
  }
  for (const CgroupSetting& setting : config.cgroups) {
    RETURN_IF_ERROR(fs->WriteFile(absl::StrCat(dir, "/", setting.file), setting.value));
  }
  return fs->WriteFile(absl::StrCat(dir, "/cgroup.procs"), absl::StrCat(pid));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> CgroupDirectories(const std::vector<CgroupMount>& mounts,
                                                           const JailerConfig& config) {
  std::vector<std::string> dirs;
  if (config.cgroup_version == 2) {
    ASSIGN_OR_RETURN(std::string dir,
                     CgroupDirectory(mounts, 2, "", config.parent_cgroup, config.id));
    dirs.push_back(dir);
    return dirs;
  }
  for (const std::string& controller : NamedControllers(config)) {
    ASSIGN_OR_RETURN(std::string dir,
                     CgroupDirectory(mounts, 1, controller, config.parent_cgroup, config.id));
    dirs.push_back(dir);
  }
  return dirs;
}

absl::Status SetUpCgroups(Filesystem* fs, const JailerConfig& config, pid_t pid) {
  if (config.cgroups.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string mounts_text, fs->ReadFile("/proc/self/mounts"));
  std::vector<CgroupMount> mounts = ParseCgroupMounts(mounts_text);
  return config.cgroup_version == 2 ? SetUpV2(fs, mounts, config, pid)
                                    : SetUpV1(fs, mounts, config, pid);
}

}  // namespace hearth::jailer
