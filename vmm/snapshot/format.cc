#include "vmm/snapshot/format.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/file_io.h"
#include "common/status_macros.h"

namespace hearth::snapshot {
namespace {

constexpr char kMagic[4] = {'H', 'S', 'N', 'P'};

template <typename T>
void Append(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(value));
}

template <typename T>
T Load(absl::string_view bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(value));
  return value;
}

}  // namespace

uint64_t Fnv1a64(absl::string_view data) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

std::string EncodeState(const hearth::vmm::v1::VmSnapshot& state) {
  std::string payload = state.SerializeAsString();
  std::string out(kMagic, sizeof(kMagic));
  Append<uint32_t>(&out, kFormatVersion);
  Append<uint64_t>(&out, payload.size());
  Append<uint64_t>(&out, Fnv1a64(payload));
  return out + payload;
}

absl::StatusOr<hearth::vmm::v1::VmSnapshot> DecodeState(absl::string_view file) {
  if (file.size() < kHeaderBytes || std::memcmp(file.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("not a Hearth snapshot state file (no HSNP header)");
  }
  uint32_t version = Load<uint32_t>(file, 4);
  if (version != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot format version ", version, "; this hearth-vmm reads version ", kFormatVersion));
  }
  uint64_t length = Load<uint64_t>(file, 8);
  uint64_t checksum = Load<uint64_t>(file, 16);
  uint64_t present = file.size() - kHeaderBytes;
  if (present != length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot state file is ", present < length ? "truncated" : "longer than its header says",
        ": ", present, " of ", length, " payload bytes"));
  }
  absl::string_view payload = file.substr(kHeaderBytes);
  if (Fnv1a64(payload) != checksum) {
    return absl::InvalidArgumentError("snapshot state file is corrupt (checksum mismatch)");
  }
  hearth::vmm::v1::VmSnapshot state;
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("snapshot state does not parse");
  }
  return state;
}

absl::StatusOr<hearth::vmm::v1::VmSnapshot> ReadStateFile(int fd) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return ErrnoStatus("fstat snapshot state");
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError("snapshot state is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxStateBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot state file is ", st.st_size, " bytes: too large to be one"));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  ASSIGN_OR_RETURN(
      size_t got,
      PreadFull(fd, absl::MakeSpan(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()), 0,
                "read snapshot state"));
  bytes.resize(got);
  return DecodeState(bytes);
}

absl::StatusOr<size_t> WriteStateFile(int fd, const hearth::vmm::v1::VmSnapshot& state) {
  std::string bytes = EncodeState(state);
  if (::ftruncate(fd, 0) < 0) return ErrnoStatus("truncate snapshot state");
  RETURN_IF_ERROR(PwriteAll(fd, bytes, 0, "write snapshot state"));
  return bytes.size();
}

}  // namespace hearth::snapshot
