// fake-vmm: a stand-in for hearth-vmm with the same command line and the
// same control protocol (agent/testing/fake_vmm.h), but no KVM: hearthd
// can start, supervise, re-attach to and kill it on any host. Used by the
// agent crash test, which SIGKILLs hearthd at random instants.
//
//   fake-vmm --control_fd=3 --reattach_fd=4 --agent_uid=U
//
// Serves the control channel on fd 3; when the agent goes away it waits on
// the re-attach listener (fd 4) for a connection from uid U, as the real
// VMM does. Runs until killed.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "agent/testing/fake_vmm.h"
#include "common/message_channel.h"
#include "common/unique_fd.h"

namespace {

int FlagValue(int argc, char** argv, const std::string& name, int fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    int value = 0;
    if (absl::StartsWith(argv[i], prefix) &&
        absl::SimpleAtoi(std::string(argv[i]).substr(prefix.size()), &value)) {
      return value;
    }
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int control_fd = FlagValue(argc, argv, "control_fd", -1);
  const int reattach_fd = FlagValue(argc, argv, "reattach_fd", -1);
  const int agent_uid = FlagValue(argc, argv, "agent_uid", 0);
  if (control_fd < 0 || reattach_fd < 0) {
    std::fprintf(stderr, "fake-vmm: --control_fd and --reattach_fd are required\n");
    return 2;
  }
  hearth::agent::testing::FakeVmm vmm("fake", ::getpid());
  vmm.Bind(hearth::MessageChannel(hearth::UniqueFd(control_fd)));
  while (true) {
    int connection = ::accept4(reattach_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    hearth::UniqueFd socket(connection);
    struct ucred peer = {};
    socklen_t length = sizeof(peer);
    if (::getsockopt(socket.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0 ||
        static_cast<int>(peer.uid) != agent_uid) {
      continue;  // only the agent may re-attach
    }
    vmm.Bind(hearth::MessageChannel(std::move(socket)));
  }
}
