// hearth-jailer's command line: Firecracker's jailer flags
// (docs/jailer.md there) plus Hearth's --keep-fd, parsed by hand because
// --cgroup, --resource-limit and --keep-fd repeat. Both "--flag value" and
// "--flag=value" work; arguments after "--" go to the VMM unchanged.
// Every error names the flag.
#ifndef HEARTH_JAILER_FLAGS_H_
#define HEARTH_JAILER_FLAGS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hearth::jailer {

struct CgroupSetting {
  std::string file;   // e.g. "memory.limit_in_bytes"
  std::string value;  // written as is
  // The controller the file belongs to: the part before the first '.'.
  std::string controller() const { return file.substr(0, file.find('.')); }
};

struct ResourceLimit {
  int resource;  // RLIMIT_FSIZE or RLIMIT_NOFILE
  std::string name;
  uint64_t value;
};

struct JailerConfig {
  std::string id;
  std::string exec_file;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string chroot_base_dir = "/srv/jailer";
  std::string netns;
  bool daemonize = false;
  bool new_pid_ns = false;
  std::vector<CgroupSetting> cgroups;
  int cgroup_version = 1;
  std::string parent_cgroup;  // default: the exec file's name
  std::vector<ResourceLimit> resource_limits;
  // Inherited fds to keep open into the VMM (e.g. the control channel).
  std::vector<int> keep_fds;
  std::vector<std::string> exec_args;

  // <chroot_base_dir>/<exec file name>/<id>/root
  std::string JailRoot() const;
  std::string ExecName() const;
};

// Parses argv (argv[0] skipped). Checks syntax and values: the id
// ([A-Za-z0-9-]{1,64}), numbers, the cgroup version, FILE=VALUE forms,
// resource names, no uid/gid 0. Does not touch the file system.
absl::StatusOr<JailerConfig> ParseFlags(const std::vector<std::string>& args);

// The usage text printed for --help or a bad flag.
const char* Usage();

}  // namespace hearth::jailer

#endif  // HEARTH_JAILER_FLAGS_H_
