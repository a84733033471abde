// hearthd: the Hearth host agent. Serves hearth.v1.Hearth over gRPC (a
// unix socket by default, TCP with TLS optionally), runs one jailed
// hearth-vmm per VM through hearth-jailer, and keeps its state under
// --state_dir so that a restarted agent re-attaches to running VMs.
//
//   hearthd --image_roots=/var/lib/hearth/images
//
// SIGTERM or SIGINT stop the agent; VMs keep running (DeleteVm stops them).
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/api_metrics.h"
#include "agent/flag_values.h"
#include "agent/process_launcher.h"
#include "agent/service.h"
#include "agent/vm_manager.h"
#include "common/errno_status.h"
#include "common/file_io.h"
#include "common/unique_fd.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"

DEFINE_string(listen, "unix:/run/hearth/hearth.sock",
              "Comma-separated addresses: unix:PATH (mode --socket_mode) and/or tcp:HOST:PORT "
              "(needs --tls_cert and --tls_key unless --insecure_tcp).");
DEFINE_string(socket_mode, "0660", "Permissions of the unix socket (octal).");
DEFINE_string(socket_group, "", "Group owning the unix socket (default: root's).");
DEFINE_string(tls_cert, "", "PEM certificate chain for tcp: listeners.");
DEFINE_string(tls_key, "", "PEM private key for tcp: listeners.");
DEFINE_string(tls_client_ca, "",
              "PEM CA bundle: tcp: clients must present a certificate it signed.");
DEFINE_bool(insecure_tcp, false, "Allow tcp: listeners without TLS (trusted networks only).");
DEFINE_string(state_dir, "/var/lib/hearth", "Where VM records are kept across restarts.");
DEFINE_string(run_dir, "/run/hearth", "Per-VM sockets and VMM logs.");
DEFINE_string(chroot_base_dir, "/srv/jailer", "The jailer's --chroot-base-dir.");
DEFINE_string(image_roots, "/var/lib/hearth/images",
              "Comma-separated directories; every host path a client names (kernels, drives, "
              "sockets, log files) must resolve beneath one of them.");
DEFINE_string(jailer, "", "hearth-jailer (default: next to hearthd, or ../jailer/).");
DEFINE_string(vmm, "", "hearth-vmm (default: next to hearthd, or ../vmm/).");
DEFINE_bool(no_jail, false,
            "Run hearth-vmm without the jailer: no cgroups, namespaces, chroot or separate "
            "uid. Development and tests only.");
DEFINE_uint32(vmm_uid_base, 400000, "VMMs run as uid/gid vmm_uid_base + n, one per VM.");
DEFINE_int32(cgroup_version, 0, "1 or 2; 0 detects (v1 if a v1 memory hierarchy is mounted).");
DEFINE_string(parent_cgroup, "hearth", "Cgroup under which each VM gets its own.");
DEFINE_uint64(vmm_overhead_mib, 64, "Memory a VMM may use beyond guest RAM (its cgroup limit).");
DEFINE_uint32(max_vcpus, 0, "vCPUs the agent admits in all (0: 4 per host CPU).");
DEFINE_uint64(max_memory_mib, 0, "Guest memory the agent admits in all (0: host RAM).");
DEFINE_uint32(max_vms, 256, "VMs (not STOPPED or FAILED) the agent admits.");
DEFINE_uint64(console_buffer_kib, 256, "Serial output kept per VM for StreamConsole replay.");
DEFINE_string(metrics_path, "",
              "Where to write agent and VM metrics as JSON every --metrics_interval_s "
              "(default: <run_dir>/metrics.json).");
DEFINE_int32(metrics_interval_s, 60, "Seconds between metrics writes.");
DEFINE_int32(bookmark_interval_s, 30, "Seconds between WatchVms BOOKMARK events.");

namespace hearth::agent {
namespace {

std::string ReadFileOrDie(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "hearthd: --%s: cannot read %s\n", flag, path.c_str());
    std::exit(2);
  }
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A sibling binary: next to hearthd (an install) or in Bazel's output tree.
std::string FindBinary(const std::string& flag, const std::string& name,
                       const std::string& package) {
  if (!flag.empty()) return flag;
  char exe[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  std::string dir = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "";
  dir = dir.substr(0, dir.rfind('/'));
  for (const std::string& candidate :
       {absl::StrCat(dir, "/", name), absl::StrCat(dir, "/../", package, "/", name)}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::StrCat(dir, "/", name);
}

std::shared_ptr<grpc::ServerCredentials> TcpCredentials() {
  if (FLAGS_tls_cert.empty() != FLAGS_tls_key.empty()) {
    std::fprintf(stderr, "hearthd: --tls_cert and --tls_key go together\n");
    std::exit(2);
  }
  if (FLAGS_tls_cert.empty()) {
    if (!FLAGS_insecure_tcp) {
      std::fprintf(stderr,
                   "hearthd: a tcp: listener needs --tls_cert and --tls_key (or --insecure_tcp)\n");
      std::exit(2);
    }
    LOG(WARNING) << "tcp listener without TLS: anyone who can reach it controls every VM";
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(
      FLAGS_tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                  : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_key_cert_pairs.push_back(
      {ReadFileOrDie(FLAGS_tls_key, "tls_key"), ReadFileOrDie(FLAGS_tls_cert, "tls_cert")});
  if (!FLAGS_tls_client_ca.empty()) {
    options.pem_root_certs = ReadFileOrDie(FLAGS_tls_client_ca, "tls_client_ca");
  }
  return grpc::SslServerCredentials(options);
}

void WriteMetrics(const std::string& path, const VmManager& manager, const ApiMetrics& api) {
  std::string vms;
  for (const auto& [id, json] : manager.LastMetrics()) {
    absl::StrAppend(&vms, vms.empty() ? "" : ",", "\"", id, "\":", json.empty() ? "{}" : json);
  }
  hearth::v1::HostAllocation allocated = manager.Allocated();
  std::string text = absl::StrCat(
      "{\"utc_time_ms\":", absl::ToUnixMillis(absl::Now()), ",\"agent\":{\"vms\":", allocated.vms(),
      ",\"vcpus\":", allocated.vcpus(), ",\"memory_mib\":", allocated.memory_mib(),
      "},\"api\":", api.Json(), ",\"vms\":{", vms, "}}\n");
  // 0640: per-VM device counters and the API's callers are not for every
  // local user (the group is --socket_group's, like the API socket's).
  std::string temporary = path + ".tmp";
  UniqueFd out(
      ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640));
  absl::Status written =
      out.valid() && ::fchmod(out.get(), 0640) == 0
          ? PwriteAll(out.get(), text, 0, absl::StrCat("metrics: write ", temporary))
          : ErrnoStatus(absl::StrCat("metrics: open ", temporary));
  if (!written.ok()) {
    LOG(WARNING) << written.message();
    ::unlink(temporary.c_str());  // best effort: the next interval writes a new one
    return;
  }
  out.Reset();
  if (::rename(temporary.c_str(), path.c_str()) < 0) {
    PLOG(WARNING) << "metrics: rename to " << path;
  }
}

int Main() {
  // Signals: SIGTERM/SIGINT are waited for below; a dead peer is an error
  // return, never a signal.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  LauncherOptions launch;
  launch.vmm_path = FindBinary(FLAGS_vmm, "hearth-vmm", "vmm");
  launch.jailer_path = FLAGS_no_jail ? "" : FindBinary(FLAGS_jailer, "hearth-jailer", "jailer");
  launch.chroot_base_dir = FLAGS_chroot_base_dir;
  launch.run_dir = FLAGS_run_dir;
  launch.cgroup_version = FLAGS_cgroup_version;
  launch.parent_cgroup = FLAGS_parent_cgroup;
  launch.vmm_overhead_mib = FLAGS_vmm_overhead_mib;
  ManagerOptions options;
  options.state_dir = FLAGS_state_dir;
  options.image_roots = absl::StrSplit(FLAGS_image_roots, ',', absl::SkipEmpty());
  options.vmm_uid_base = FLAGS_vmm_uid_base;
  options.max_vcpus = FLAGS_max_vcpus;
  options.max_memory_mib = FLAGS_max_memory_mib;
  options.max_vms = FLAGS_max_vms;
  options.console_buffer_bytes = FLAGS_console_buffer_kib * 1024;
  absl::StatusOr<mode_t> socket_mode = ParseSocketMode(FLAGS_socket_mode);
  if (!socket_mode.ok()) {
    std::fprintf(stderr, "hearthd: %s\n", std::string(socket_mode.status().message()).c_str());
    return 2;
  }
  if (options.image_roots.empty()) {
    std::fprintf(stderr, "hearthd: --image_roots: at least one directory is required\n");
    return 2;
  }
  for (const std::string& binary : {launch.vmm_path, launch.jailer_path}) {
    if (!binary.empty() && ::access(binary.c_str(), X_OK) != 0) {
      std::fprintf(stderr, "hearthd: %s is not an executable (use --vmm / --jailer)\n",
                   binary.c_str());
      return 2;
    }
  }
  if (FLAGS_no_jail) LOG(WARNING) << "--no_jail: VMMs run unconfined, as this agent's user";

  absl::StatusOr<std::unique_ptr<ProcessLauncher>> launcher = ProcessLauncher::Create(launch);
  if (!launcher.ok()) {
    std::fprintf(stderr, "hearthd: %s\n", std::string(launcher.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<VmManager>> manager =
      VmManager::Create(options, std::move(*launcher));
  if (!manager.ok()) {
    std::fprintf(stderr, "hearthd: %s\n", std::string(manager.status().message()).c_str());
    return 1;
  }
  absl::Status started = (*manager)->Start();
  if (!started.ok()) {
    std::fprintf(stderr, "hearthd: %s\n", std::string(started.message()).c_str());
    return 1;
  }

  ApiMetrics api_metrics;
  HearthService service(manager->get(), &api_metrics);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::vector<std::string> unix_paths;
  // Each listener as the ready line reports it: "unix:PATH", or "tcp:HOST"
  // and the port gRPC bound (port 0 asks the kernel for one). A deque, so
  // that the selected_port pointers stay valid until BuildAndStart.
  std::deque<std::pair<std::string, int>> listeners;
  for (absl::string_view address : absl::StrSplit(FLAGS_listen, ',', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&address, "unix:")) {
      std::string path(address);
      std::string dir = path.substr(0, path.rfind('/'));
      if (!dir.empty()) ::mkdir(dir.c_str(), 0755);
      ::unlink(path.c_str());  // a socket left by an earlier agent
      builder.AddListeningPort(absl::StrCat("unix:", path), grpc::InsecureServerCredentials());
      unix_paths.push_back(path);
      listeners.emplace_back(absl::StrCat("unix:", path), -1);
    } else if (absl::ConsumePrefix(&address, "tcp:")) {
      listeners.emplace_back(absl::StrCat("tcp:", address.substr(0, address.rfind(':'))), 0);
      builder.AddListeningPort(std::string(address), TcpCredentials(), &listeners.back().second);
    } else {
      std::fprintf(stderr, "hearthd: --listen: \"%s\" is neither unix:PATH nor tcp:HOST:PORT\n",
                   std::string(address).c_str());
      return 2;
    }
  }
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "hearthd: cannot listen on %s\n", FLAGS_listen.c_str());
    return 1;
  }
  gid_t group = static_cast<gid_t>(-1);
  if (!FLAGS_socket_group.empty()) {
    struct group* entry = ::getgrnam(FLAGS_socket_group.c_str());
    if (entry == nullptr) {
      std::fprintf(stderr, "hearthd: --socket_group: no group \"%s\"\n",
                   FLAGS_socket_group.c_str());
      return 2;
    }
    group = entry->gr_gid;
  }
  for (const std::string& path : unix_paths) {
    if (::chmod(path.c_str(), *socket_mode) < 0) {
      // A socket left with the wrong mode may let the wrong users in.
      std::fprintf(stderr, "hearthd: chmod %s: %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
    if (group != static_cast<gid_t>(-1) &&
        ::chown(path.c_str(), static_cast<uid_t>(-1), group) < 0) {
      std::fprintf(stderr, "hearthd: chown %s: %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::string bound;
  for (const auto& [name, port] : listeners) {
    absl::StrAppend(&bound, bound.empty() ? "" : ",", name,
                    port < 0 ? "" : absl::StrCat(":", port));
  }
  LOG(INFO) << "hearthd " << kAgentVersion << " serving on " << bound;
  // For scripts that wait for the agent (tools/demo, tests): the addresses
  // as bound, so a tcp: port 0 shows the port the kernel chose.
  std::fprintf(stderr, "hearthd: ready on %s\n", bound.c_str());

  // Housekeeping: bookmarks for watchers and the metrics file.
  std::string metrics_path =
      FLAGS_metrics_path.empty() ? FLAGS_run_dir + "/metrics.json" : FLAGS_metrics_path;
  absl::Notification stopping;
  std::thread housekeeping([&] {
    absl::Time next_metrics = absl::Now() + absl::Seconds(FLAGS_metrics_interval_s);
    absl::Duration tick =
        absl::Seconds(std::max(1, std::min(FLAGS_bookmark_interval_s, FLAGS_metrics_interval_s)));
    while (!stopping.WaitForNotificationWithTimeout(tick)) {
      (*manager)->SendBookmarks();
      if (absl::Now() >= next_metrics) {
        next_metrics = absl::Now() + absl::Seconds(FLAGS_metrics_interval_s);
        // Shared: a VMM that answers only after this wait gave up (calls
        // time out after 30 s) still finds the notification alive.
        auto flushed = std::make_shared<absl::Notification>();
        (*manager)->FlushAllMetrics([flushed] { flushed->Notify(); });
        (void)flushed->WaitForNotificationWithTimeout(absl::Seconds(10));
        WriteMetrics(metrics_path, **manager, api_metrics);
      }
    }
  });

  int signal = 0;
  sigwait(&stop_signals, &signal);
  LOG(WARNING) << "stopping on signal " << signal << "; VMs keep running";
  stopping.Notify();
  housekeeping.join();
  // In-flight calls get a moment to finish; then everything is cancelled
  // (gRPC also waits this long for connected clients that are idle).
  // Clients retry against the next agent: every RPC is safe to repeat.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
  (*manager)->Stop();
  WriteMetrics(metrics_path, **manager, api_metrics);
  for (const std::string& path : unix_paths) ::unlink(path.c_str());
  return 0;
}

}  // namespace
}  // namespace hearth::agent

int main(int argc, char** argv) {
  gflags::SetUsageMessage("hearthd --image_roots=DIR[,DIR...] [--listen=unix:PATH|tcp:HOST:PORT]");
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging("hearthd");
  return hearth::agent::Main();
}
