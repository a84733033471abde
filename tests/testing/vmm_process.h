// hearth-vmm running in the background of a test, on a JSON config.
#ifndef HEARTH_TESTS_TESTING_VMM_PROCESS_H_
#define HEARTH_TESTS_TESTING_VMM_PROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/subprocess.h"

namespace hearth::testing {

// hearth-vmm on `config_json` (written to a temporary file), in the
// background, with `flags` after --config; `prefix` (e.g. {"ip", "netns",
// "exec", "ns"}) goes first.
absl::StatusOr<BackgroundProcess> StartVmm(const std::string& config_json,
                                           const std::vector<std::string>& prefix = {},
                                           const std::vector<std::string>& flags = {});

}  // namespace hearth::testing

#endif  // HEARTH_TESTS_TESTING_VMM_PROCESS_H_
