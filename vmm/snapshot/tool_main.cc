// hearth-snapshot: offline work on snapshot files.
//
//   hearth-snapshot info STATE
//       What a state file holds: kind, ids, vCPUs, memory layout, devices.
//   hearth-snapshot merge BASE_MEMORY DIFF_STATE DIFF_MEMORY OUT_STATE OUT_MEMORY
//       Makes a Full snapshot out of a Diff and the memory file of the
//       snapshot it follows: OUT_MEMORY is BASE_MEMORY with every page the
//       Diff holds written over it, OUT_STATE the Diff's state marked Full.
//       For a chain of Diffs, merge them in order, each onto the last result.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "vmm/snapshot/format.h"
#include "vmm/snapshot/memory_file.h"

namespace hearth::snapshot {
namespace {

namespace v1 = ::hearth::vmm::v1;

int Fail(const std::string& message) {
  std::fprintf(stderr, "hearth-snapshot: %s\n", message.c_str());
  return 1;
}

UniqueFd Open(const std::string& path, int flags) {
  return UniqueFd(::open(path.c_str(), flags | O_CLOEXEC, 0600));
}

int Info(const std::string& path) {
  UniqueFd fd = Open(path, O_RDONLY);
  if (!fd.valid()) return Fail(absl::StrCat(path, ": ", std::strerror(errno)));
  absl::StatusOr<v1::VmSnapshot> state = ReadStateFile(fd.get());
  if (!state.ok()) return Fail(absl::StrCat(path, ": ", state.status().message()));
  std::printf("kind: %s\n", v1::VmSnapshot::MemoryKind_Name(state->memory_kind()).c_str());
  std::printf("snapshot_id: %016llx\n", static_cast<unsigned long long>(state->snapshot_id()));
  if (state->parent_snapshot_id() != 0) {
    std::printf("parent_snapshot_id: %016llx\n",
                static_cast<unsigned long long>(state->parent_snapshot_id()));
  }
  std::printf("vmm_version: %s\nvcpus: %d\nmemory_file_size: %llu\n", state->vmm_version().c_str(),
              state->vcpus_size(), static_cast<unsigned long long>(state->memory_file_size()));
  for (const v1::MemoryRegion& r : state->memory()) {
    std::printf("memory: guest 0x%llx size 0x%llx file offset 0x%llx\n",
                static_cast<unsigned long long>(r.guest_address()),
                static_cast<unsigned long long>(r.size()),
                static_cast<unsigned long long>(r.file_offset()));
  }
  for (const v1::VirtioState& d : state->virtio()) {
    std::printf("device: %s status 0x%x\n", d.id().c_str(), d.status());
  }
  return 0;
}

int Merge(const std::string& base_memory, const std::string& diff_state,
          const std::string& diff_memory, const std::string& out_state,
          const std::string& out_memory) {
  UniqueFd state_fd = Open(diff_state, O_RDONLY);
  if (!state_fd.valid()) return Fail(absl::StrCat(diff_state, ": ", std::strerror(errno)));
  absl::StatusOr<v1::VmSnapshot> state = ReadStateFile(state_fd.get());
  if (!state.ok()) return Fail(absl::StrCat(diff_state, ": ", state.status().message()));
  if (state->memory_kind() != v1::VmSnapshot::DIFF) {
    return Fail(absl::StrCat(diff_state, " is not a Diff snapshot"));
  }
  UniqueFd base = Open(base_memory, O_RDONLY);
  UniqueFd diff = Open(diff_memory, O_RDONLY);
  UniqueFd out = Open(out_memory, O_RDWR | O_CREAT | O_TRUNC);
  if (!base.valid() || !diff.valid() || !out.valid()) {
    return Fail(absl::StrCat("opening the memory files: ", std::strerror(errno)));
  }
  absl::Status status = CopySparse(base.get(), out.get());
  if (status.ok()) status = ApplyDiff(diff.get(), out.get());
  if (!status.ok()) return Fail(std::string(status.message()));
  state->set_memory_kind(v1::VmSnapshot::FULL);
  UniqueFd out_state_fd = Open(out_state, O_WRONLY | O_CREAT | O_TRUNC);
  if (!out_state_fd.valid()) return Fail(absl::StrCat(out_state, ": ", std::strerror(errno)));
  absl::StatusOr<size_t> written = WriteStateFile(out_state_fd.get(), *state);
  if (!written.ok()) return Fail(std::string(written.status().message()));
  return 0;
}

}  // namespace
}  // namespace hearth::snapshot

int main(int argc, char** argv) {
  std::string command = argc > 1 ? argv[1] : "";
  if (command == "info" && argc == 3) return hearth::snapshot::Info(argv[2]);
  if (command == "merge" && argc == 7) {
    return hearth::snapshot::Merge(argv[2], argv[3], argv[4], argv[5], argv[6]);
  }
  std::fprintf(stderr,
               "usage: hearth-snapshot info STATE\n"
               "       hearth-snapshot merge BASE_MEMORY DIFF_STATE DIFF_MEMORY OUT_STATE "
               "OUT_MEMORY\n");
  return 2;
}
