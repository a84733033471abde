#include "agent/state_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/file_io.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace hearth::agent {
namespace {

constexpr char kMagic[4] = {'H', 'S', 'R', '1'};
constexpr size_t kHeader = 4 + 4 + 8;
constexpr char kSuffix[] = ".rec";

uint64_t Fnv1a(const std::string& data) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

}  // namespace

std::string StateStore::Frame(const std::string& payload) {
  std::string out(kMagic, 4);
  uint32_t length = static_cast<uint32_t>(payload.size());
  uint64_t hash = Fnv1a(payload);
  out.append(reinterpret_cast<const char*>(&length), 4);
  out.append(reinterpret_cast<const char*>(&hash), 8);
  return out + payload;
}

absl::StatusOr<std::string> StateStore::Unframe(const std::string& file) {
  if (file.size() < kHeader || std::memcmp(file.data(), kMagic, 4) != 0) {
    return absl::DataLossError("not a Hearth state record (bad magic or too short)");
  }
  uint32_t length;
  uint64_t hash;
  std::memcpy(&length, file.data() + 4, 4);
  std::memcpy(&hash, file.data() + 8, 8);
  if (file.size() - kHeader != length) {
    return absl::DataLossError(
        absl::StrCat("record is torn: ", file.size() - kHeader, " of ", length, " bytes"));
  }
  std::string payload = file.substr(kHeader);
  if (Fnv1a(payload) != hash) return absl::DataLossError("record checksum mismatch");
  return payload;
}

absl::StatusOr<StateStore> StateStore::Open(const std::string& dir, WriteHook hook) {
  RETURN_IF_ERROR(MakeDir(dir));
  RETURN_IF_ERROR(MakeDir(dir + "/vms"));
  return StateStore(dir, std::move(hook));
}

absl::Status StateStore::WriteTemp(const std::string& temp, const std::string& contents) const {
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open ", temp));
  RETURN_IF_ERROR(PwriteAll(fd.get(), Frame(contents), 0, absl::StrCat("write ", temp)));
  if (hook_) RETURN_IF_ERROR(hook_(temp));
  if (::fsync(fd.get()) < 0) return ErrnoStatus(absl::StrCat("fsync ", temp));
  return absl::OkStatus();
}

absl::Status StateStore::WriteAtomically(const std::string& path,
                                         const std::string& contents) const {
  std::string temp = path + ".tmp";
  absl::Status written = WriteTemp(temp, contents);
  if (written.ok() && ::rename(temp.c_str(), path.c_str()) < 0) {
    written = ErrnoStatus(absl::StrCat("rename ", temp));
  }
  if (!written.ok()) {
    // The previous record (if any) is intact; no half-written file stays.
    // (If even the unlink fails, LoadVms removes the leftover.)
    ::unlink(temp.c_str());
    return written;
  }
  // Make the rename itself durable.
  std::string dir = path.substr(0, path.rfind('/'));
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid() || ::fsync(dir_fd.get()) < 0) {
    return ErrnoStatus(absl::StrCat("fsync ", dir));
  }
  return absl::OkStatus();
}

absl::Status StateStore::SaveVm(const hearth::agent::v1::VmRecord& record) const {
  return WriteAtomically(absl::StrCat(dir_, "/vms/", record.vm().vm_id(), kSuffix),
                         record.SerializeAsString());
}

absl::Status StateStore::DeleteVm(const std::string& vm_id) const {
  std::string path = absl::StrCat(dir_, "/vms/", vm_id, kSuffix);
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    return ErrnoStatus(absl::StrCat("unlink ", path));
  return absl::OkStatus();
}

std::vector<hearth::agent::v1::VmRecord> StateStore::LoadVms(
    std::vector<std::string>* skipped) const {
  std::vector<hearth::agent::v1::VmRecord> records;
  std::string dir = dir_ + "/vms";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return records;
  while (struct dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    std::string path = absl::StrCat(dir, "/", name);
    if (!absl::EndsWith(name, kSuffix)) {
      // A write interrupted before its rename: the previous record (if any)
      // is still in place.
      skipped->push_back(absl::StrCat(path, ": leftover of an interrupted write, removed"));
      ::unlink(path.c_str());
      continue;
    }
    absl::StatusOr<std::string> file = ReadWhole(path);
    absl::StatusOr<std::string> payload = file.ok() ? Unframe(*file) : file.status();
    hearth::agent::v1::VmRecord record;
    if (!payload.ok() || !record.ParseFromString(*payload)) {
      skipped->push_back(
          absl::StrCat(path, ": ", payload.ok() ? "does not parse" : payload.status().message()));
      continue;
    }
    if (absl::StrCat(record.vm().vm_id(), kSuffix) != name) {
      skipped->push_back(absl::StrCat(path, ": names VM \"", record.vm().vm_id(), "\""));
      continue;
    }
    records.push_back(std::move(record));
  }
  ::closedir(d);
  return records;
}

absl::Status StateStore::SaveAgent(const hearth::agent::v1::AgentState& state) const {
  return WriteAtomically(dir_ + "/agent.rec", state.SerializeAsString());
}

hearth::agent::v1::AgentState StateStore::LoadAgent() const {
  hearth::agent::v1::AgentState state;
  absl::StatusOr<std::string> file = ReadWhole(dir_ + "/agent.rec");
  if (!file.ok()) return state;
  absl::StatusOr<std::string> payload = Unframe(*file);
  // A failed parse can leave the fields read before the failure: start over
  // from the default rather than resume from half a state.
  if (!payload.ok() || !state.ParseFromString(*payload)) state.Clear();
  return state;
}

}  // namespace hearth::agent
