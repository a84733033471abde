// A real hearthd for end-to-end tests: temporary state, run, jail and image
// directories, a unix socket, its log in a file, and a gRPC stub on it.
// Jailed (hearth-jailer, cgroups, a uid per VM) when the test runs as root
// in a normal build; --no_jail otherwise (ASan builds cannot jail).
#ifndef HEARTH_TESTS_TESTING_AGENT_H_
#define HEARTH_TESTS_TESTING_AGENT_H_

#include <sys/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hearth/v1/hearth.grpc.pb.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {

struct AgentOptions {
  // Extra hearthd flags ("--max_vcpus=4").
  std::vector<std::string> flags;
  // argv prefix (e.g. TapNamespace::ExecPrefix()).
  std::vector<std::string> prefix;
  bool jail = true;  // ignored (no jail) unless root and not ASan
};

class Agent {
 public:
  // Starts hearthd in fresh directories under `dir` (created if missing;
  // an existing state directory is reused, which is how a restart is
  // tested) and waits until its socket answers.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(const std::string& dir,
                                                      const AgentOptions& options = {});
  ~Agent();  // SIGKILLs hearthd if still running (its VMMs keep running)

  hearth::v1::Hearth::Stub* stub() { return stub_.get(); }
  std::unique_ptr<hearth::v1::Hearth::Stub> NewStub() const;
  pid_t pid() const { return pid_; }
  bool jailed() const { return jailed_; }
  const std::string& dir() const { return dir_; }
  std::string images() const { return dir_ + "/images"; }
  std::string socket() const { return dir_ + "/hearth.sock"; }
  std::string log() const;

  // Sends `signal` and waits for hearthd to exit; returns its wait status.
  // Then removes this process's cgroup parent (below) where it is empty.
  int Stop(int signal, absl::Duration timeout = absl::Seconds(20));

  // Each agent of a test process puts its VMs' cgroups under a parent of
  // that process's own, hearth-test-<pid>, so that parallel tests never
  // meet. Returns the parent's directory (or its `child`'s) in every
  // mounted cgroup hierarchy where it exists.
  static std::vector<std::string> TestCgroups(const std::string& child = "");
  // Open file descriptors of hearthd (for leak checks).
  int OpenFds() const;

 private:
  Agent() = default;
  pid_t pid_ = -1;
  bool jailed_ = false;
  std::string dir_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<hearth::v1::Hearth::Stub> stub_;
};

// A process is alive (and not a zombie).
bool ProcessAlive(pid_t pid);

// The live processes whose executable is `exe`.
std::set<pid_t> ProcessesOf(const std::string& exe);
// The names in a directory (none if it cannot be read).
std::set<std::string> DirEntries(const std::string& dir);
// A copy of tests:fake-vmm (the control protocol without KVM) at
// <dir>/fake-vmm, so that its processes are told apart from any other
// test's by their executable's path. Returns that path.
absl::StatusOr<std::string> InstallFakeVmm(const std::string& dir);

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_AGENT_H_
