// Start-up benchmark: time from forking hearth-jailer (cgroups, namespaces,
// pivot_root, privilege drop, exec) to hearth-vmm answering its first
// control request (GetInfo), and the CPU time spent by then. Median and
// p90 of --runs runs. Firecracker's published figure: <= 8 CPU ms from
// start to API ready. Needs root.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/vmm_connection.h"

namespace {

namespace control = ::hearth::vmm::v1;

// CPU nanoseconds the process (all its threads) has used.
int64_t CpuNs(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/schedstat"));
  int64_t ns = 0;
  in >> ns;
  return ns;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(p * (values.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 50;
  std::string dir = argc > 1 ? argv[1] : ".";
  if (argc > 2) runs = std::atoi(argv[2]);
  if (::geteuid() != 0) {
    std::printf("bench/jailer: SKIPPED (needs root)\n");
    return 0;
  }
  // A cgroup parent and jail base of the benchmark's own, removed at the end.
  const std::string parent = absl::StrCat("hearth-bench-", ::getpid());
  const std::string base = absl::StrCat("/tmp/", parent);
  auto remove_parents = [&] {
    for (const char* cg : {"memory", "pids"}) {
      ::rmdir(absl::StrCat("/sys/fs/cgroup/", cg, "/", parent).c_str());
    }
    ::rmdir(absl::StrCat(base, "/hearth-vmm").c_str());
    ::rmdir(base.c_str());
  };
  std::vector<double> wall_ms, cpu_ms;
  for (int i = 0; i < runs; ++i) {
    std::string id = absl::StrCat("bench-", ::getpid(), "-", i);
    int sockets[2];
    ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets);
    std::vector<std::string> args = {dir + "/jailer/hearth-jailer",
                                     "--id",
                                     id,
                                     "--exec-file",
                                     dir + "/vmm/hearth-vmm",
                                     "--uid",
                                     "61000",
                                     "--gid",
                                     "61000",
                                     "--chroot-base-dir",
                                     base,
                                     "--parent-cgroup",
                                     parent,
                                     "--cgroup",
                                     "memory.limit_in_bytes=268435456",
                                     "--cgroup",
                                     "pids.max=64",
                                     "--keep-fd",
                                     "3",
                                     "--",
                                     "--control_fd=3"};
    std::vector<char*> argp;
    for (std::string& a : args) argp.push_back(a.data());
    argp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sockets[1], 3);
    absl::Time start = absl::Now();
    pid_t pid;
    char* envp[] = {nullptr};
    if (posix_spawn(&pid, argp[0], &actions, nullptr, argp.data(), envp) != 0) {
      std::perror("posix_spawn");
      return 1;
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(sockets[1]);
    hearth::agent::VmmConnection connection{hearth::MessageChannel(hearth::UniqueFd(sockets[0]))};
    control::Request info;
    info.mutable_get_info();
    absl::StatusOr<control::Response> response = connection.Call(info, {}, absl::Seconds(30));
    absl::Duration elapsed = absl::Now() - start;
    int64_t cpu = CpuNs(pid);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    for (const char* cg : {"memory", "pids"}) {
      ::rmdir(absl::StrCat("/sys/fs/cgroup/", cg, "/", parent, "/", id).c_str());
    }
    ::rmdir(absl::StrCat(base, "/hearth-vmm/", id, "/root").c_str());
    ::rmdir(absl::StrCat(base, "/hearth-vmm/", id).c_str());
    if (!response.ok()) {
      std::printf("run %d failed: %s\n", i, std::string(response.status().message()).c_str());
      remove_parents();
      return 1;
    }
    wall_ms.push_back(absl::ToDoubleMilliseconds(elapsed));
    cpu_ms.push_back(static_cast<double>(cpu) / 1e6);
  }
  remove_parents();
  std::printf("bench/jailer: fork of hearth-jailer -> hearth-vmm answers GetInfo, %d runs\n", runs);
  std::printf("  wall ms: median %.2f  p90 %.2f\n", Percentile(wall_ms, 0.5),
              Percentile(wall_ms, 0.9));
  std::printf(
      "  CPU ms (jailer + VMM): median %.2f  p90 %.2f   (Firecracker: <= 8 CPU ms to API ready)\n",
      Percentile(cpu_ms, 0.5), Percentile(cpu_ms, 0.9));
  return 0;
}
