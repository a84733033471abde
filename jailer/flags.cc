#include "jailer/flags.h"

#include <sys/resource.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/jail_layout.h"

namespace hearth::jailer {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

bool ValidId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '-') return false;
  }
  return true;
}

template <typename T>
absl::StatusOr<T> Number(absl::string_view flag, const std::string& value) {
  T number;
  if (!absl::SimpleAtoi(value, &number)) {
    return Bad(flag, absl::StrCat("\"", value, "\" is not a number"));
  }
  return number;
}

}  // namespace

const char* Usage() {
  return "usage: hearth-jailer --id ID --exec-file PATH --uid UID --gid GID\n"
         "         [--chroot-base-dir DIR] [--netns PATH] [--daemonize] [--new-pid-ns]\n"
         "         [--cgroup FILE=VALUE]... [--cgroup-version 1|2] [--parent-cgroup NAME]\n"
         "         [--resource-limit fsize=N|no-file=N]... [--keep-fd FD]...\n"
         "         [-- VMM ARGUMENTS...]\n";
}

std::string JailerConfig::ExecName() const {
  size_t slash = exec_file.rfind('/');
  return slash == std::string::npos ? exec_file : exec_file.substr(slash + 1);
}

std::string JailerConfig::JailRoot() const {
  return JailDirectory(chroot_base_dir, exec_file, id) + "/root";
}

absl::StatusOr<JailerConfig> ParseFlags(const std::vector<std::string>& args) {
  JailerConfig config;
  bool has_id = false, has_exec = false, has_uid = false, has_gid = false;
  const std::map<std::string, bool> takes_value = {{"id", true},
                                                   {"exec-file", true},
                                                   {"uid", true},
                                                   {"gid", true},
                                                   {"chroot-base-dir", true},
                                                   {"netns", true},
                                                   {"daemonize", false},
                                                   {"new-pid-ns", false},
                                                   {"cgroup", true},
                                                   {"cgroup-version", true},
                                                   {"parent-cgroup", true},
                                                   {"resource-limit", true},
                                                   {"keep-fd", true}};
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      config.exec_args.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    auto known = takes_value.find(name);
    if (known == takes_value.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (known->second && !inline_value) {
      if (i + 1 >= args.size()) return Bad(name, "needs a value");
      value = args[++i];
    } else if (!known->second && inline_value) {
      return Bad(name, "takes no value");
    }
    if (name == "id") {
      if (!ValidId(value))
        return Bad(name, absl::StrCat("\"", value, "\" must match [A-Za-z0-9-]{1,64}"));
      config.id = value;
      has_id = true;
    } else if (name == "exec-file") {
      if (value.empty() || value[0] != '/') return Bad(name, "must be an absolute path");
      config.exec_file = value;
      has_exec = true;
    } else if (name == "uid") {
      absl::StatusOr<uint32_t> uid = Number<uint32_t>(name, value);
      if (!uid.ok()) return uid.status();
      if (*uid == 0) return Bad(name, "the VMM must not run as root (0)");
      config.uid = *uid;
      has_uid = true;
    } else if (name == "gid") {
      absl::StatusOr<uint32_t> gid = Number<uint32_t>(name, value);
      if (!gid.ok()) return gid.status();
      if (*gid == 0) return Bad(name, "the VMM must not run with group root (0)");
      config.gid = *gid;
      has_gid = true;
    } else if (name == "chroot-base-dir") {
      if (value.empty() || value[0] != '/') return Bad(name, "must be an absolute path");
      config.chroot_base_dir = value;
    } else if (name == "netns") {
      if (value.empty() || value[0] != '/') return Bad(name, "must be an absolute path");
      config.netns = value;
    } else if (name == "daemonize") {
      config.daemonize = true;
    } else if (name == "new-pid-ns") {
      config.new_pid_ns = true;
    } else if (name == "cgroup") {
      size_t sep = value.find('=');
      if (sep == std::string::npos || sep == 0 || value.find('/') != std::string::npos ||
          value.substr(0, sep).find('.') == std::string::npos) {
        return Bad(name,
                   absl::StrCat("\"", value, "\" is not FILE=VALUE with a file like memory.max"));
      }
      config.cgroups.push_back({value.substr(0, sep), value.substr(sep + 1)});
    } else if (name == "cgroup-version") {
      if (value != "1" && value != "2")
        return Bad(name, absl::StrCat("\"", value, "\" is not 1 or 2"));
      config.cgroup_version = value == "1" ? 1 : 2;
    } else if (name == "parent-cgroup") {
      if (value.empty() || absl::StrContains(value, "..") || value[0] == '/') {
        return Bad(name, "must be a relative cgroup path without \"..\"");
      }
      config.parent_cgroup = value;
    } else if (name == "resource-limit") {
      size_t sep = value.find('=');
      std::string resource = sep == std::string::npos ? value : value.substr(0, sep);
      int which = resource == "fsize" ? RLIMIT_FSIZE : resource == "no-file" ? RLIMIT_NOFILE : -1;
      if (which < 0 || sep == std::string::npos) {
        return Bad(name, absl::StrCat("\"", value, "\" is not fsize=N or no-file=N"));
      }
      absl::StatusOr<uint64_t> limit = Number<uint64_t>(name, value.substr(sep + 1));
      if (!limit.ok()) return limit.status();
      config.resource_limits.push_back({which, resource, *limit});
    } else if (name == "keep-fd") {
      absl::StatusOr<int> fd = Number<int>(name, value);
      if (!fd.ok()) return fd.status();
      if (*fd < 3) return Bad(name, "fds 0-2 are always kept; give 3 or more");
      config.keep_fds.push_back(*fd);
    }
  }
  if (!has_id) return Bad("id", "is required");
  if (!has_exec) return Bad("exec-file", "is required");
  if (!has_uid) return Bad("uid", "is required");
  if (!has_gid) return Bad("gid", "is required");
  if (config.parent_cgroup.empty()) config.parent_cgroup = config.ExecName();
  // Firecracker's default: 2048 open files.
  bool has_nofile = false;
  for (const ResourceLimit& limit : config.resource_limits)
    has_nofile |= limit.resource == RLIMIT_NOFILE;
  if (!has_nofile) config.resource_limits.push_back({RLIMIT_NOFILE, "no-file", 2048});
  return config;
}

}  // namespace hearth::jailer
