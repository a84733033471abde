// hearth-jailer: starts hearth-vmm inside a jail (see jailer/jail.h for the
// steps), with Firecracker's jailer flags. Exits 1 with "hearth-jailer:
// <step>: <reason>" on stderr if a step fails.
#include <cstdio>
#include <string>
#include <vector>

#include "jailer/flags.h"
#include "jailer/jail.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(hearth::jailer::Usage(), stdout);
      return 0;
    }
    if (arg == "--") break;
  }
  absl::StatusOr<hearth::jailer::JailerConfig> config = hearth::jailer::ParseFlags(args);
  if (!config.ok()) {
    std::fprintf(stderr, "hearth-jailer: %s\n%s", std::string(config.status().message()).c_str(),
                 hearth::jailer::Usage());
    return 2;
  }
  absl::Status status = hearth::jailer::RunJailer(*config);
  std::fprintf(stderr, "hearth-jailer: %s\n", std::string(status.message()).c_str());
  return 1;
}
