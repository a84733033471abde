#include "tests/testing/vmm_process.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace hearth::testing {

absl::StatusOr<BackgroundProcess> StartVmm(const std::string& config_json,
                                           const std::vector<std::string>& prefix,
                                           const std::vector<std::string>& flags) {
  std::string dir = MakeTempDir("vmm-");
  std::string path = dir + "/vm.json";
  absl::Status written = WriteFile(path, config_json);
  if (!written.ok()) return written;
  std::vector<std::string> argv = prefix;
  argv.insert(argv.end(), {Runfile("vmm/hearth-vmm"), "--config=" + path});
  argv.insert(argv.end(), flags.begin(), flags.end());
  return BackgroundProcess::Start(argv);
}

}  // namespace hearth::testing
