#include "vmm/snapshot/format.h"

#include "gtest/gtest.h"

namespace hearth::snapshot {
namespace {

namespace v1 = ::hearth::vmm::v1;

v1::VmSnapshot Sample() {
  v1::VmSnapshot state;
  state.set_vmm_version("test");
  state.set_memory_kind(v1::VmSnapshot::FULL);
  state.set_memory_file_size(1 << 20);
  state.set_snapshot_id(42);
  state.add_vcpus()->set_regs(std::string(144, 'r'));
  state.mutable_config()->mutable_machine_config()->set_vcpu_count(1);
  return state;
}

TEST(SnapshotFormat, RoundTrips) {
  std::string file = EncodeState(Sample());
  absl::StatusOr<v1::VmSnapshot> decoded = DecodeState(file);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->snapshot_id(), 42u);
  EXPECT_EQ(decoded->vcpus(0).regs(), std::string(144, 'r'));
}

TEST(SnapshotFormat, EveryFlippedByteIsRefused) {
  std::string file = EncodeState(Sample());
  for (size_t i = 0; i < file.size(); ++i) {
    std::string bad = file;
    bad[i] ^= 0x01;
    EXPECT_FALSE(DecodeState(bad).ok()) << "flipped byte " << i << " was accepted";
  }
}

TEST(SnapshotFormat, TruncatedAndExtendedFilesAreRefused) {
  std::string file = EncodeState(Sample());
  for (size_t length : {size_t{0}, size_t{3}, kHeaderBytes - 1, kHeaderBytes, file.size() - 1}) {
    absl::StatusOr<v1::VmSnapshot> decoded = DecodeState(file.substr(0, length));
    EXPECT_FALSE(decoded.ok()) << length;
  }
  absl::StatusOr<v1::VmSnapshot> truncated = DecodeState(file.substr(0, file.size() - 1));
  EXPECT_NE(std::string(truncated.status().message()).find("truncated"), std::string::npos)
      << truncated.status();
  absl::StatusOr<v1::VmSnapshot> extended = DecodeState(file + "x");
  EXPECT_FALSE(extended.ok());
}

TEST(SnapshotFormat, AnotherVersionIsRefusedByName) {
  std::string file = EncodeState(Sample());
  file[4] = 2;  // format version, little-endian
  absl::StatusOr<v1::VmSnapshot> decoded = DecodeState(file);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(std::string(decoded.status().message()).find("version 2"), std::string::npos)
      << decoded.status();
}

TEST(SnapshotFormat, OtherFilesAreNotSnapshots) {
  EXPECT_FALSE(DecodeState("\x7f"
                           "ELF and more bytes than a header")
                   .ok());
  EXPECT_FALSE(DecodeState(std::string(100, '\0')).ok());
}

}  // namespace
}  // namespace hearth::snapshot
