#include "agent/state_store.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

using google::protobuf::util::MessageDifferencer;
using hearth::agent::v1::AgentState;
using hearth::agent::v1::VmRecord;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

VmRecord Record(const std::string& vm_id, int pid) {
  VmRecord record;
  record.mutable_vm()->set_vm_id(vm_id);
  (*record.mutable_vm()->mutable_labels())["env"] = "test";
  record.mutable_vm()->set_resource_version(static_cast<uint64_t>(pid) * 10);
  record.set_pid(pid);
  record.set_pid_start_time(123456789);
  record.set_uid(10000 + static_cast<uint32_t>(pid));
  record.set_run_dir("/run/hearth/" + vm_id);
  record.set_jail_dir("/srv/jailer/hearth-vmm/" + vm_id);
  record.add_cgroup_dirs("/sys/fs/cgroup/hearth/" + vm_id);
  record.mutable_created_config()->mutable_machine_config()->set_vcpu_count(2);
  return record;
}

// One state directory under $TEST_TMPDIR per test, holding records for
// "vm-a" and "vm-b" once SaveTwo() ran.
class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = ::getenv("TEST_TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/state-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern + "/state";
    absl::StatusOr<StateStore> store = StateStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_.emplace(*std::move(store));
  }

  void SaveTwo() {
    ASSERT_TRUE(store_->SaveVm(Record("vm-a", 1)).ok());
    ASSERT_TRUE(store_->SaveVm(Record("vm-b", 2)).ok());
  }

  std::string VmPath(const std::string& vm_id) const { return dir_ + "/vms/" + vm_id + ".rec"; }

  // Loads, sorted by vm_id; the skip descriptions go to skipped_.
  std::vector<VmRecord> Load() {
    skipped_.clear();
    std::vector<VmRecord> records = store_->LoadVms(&skipped_);
    std::sort(records.begin(), records.end(),
              [](const VmRecord& a, const VmRecord& b) { return a.vm().vm_id() < b.vm().vm_id(); });
    return records;
  }

  // Exactly one file was skipped, and its description names `file` and
  // contains `why`.
  void ExpectSkippedOne(const std::string& file, const std::string& why) {
    ASSERT_EQ(skipped_.size(), 1u) << ::testing::PrintToString(skipped_);
    EXPECT_TRUE(absl::StrContains(skipped_[0], file)) << skipped_[0];
    EXPECT_TRUE(absl::StrContains(skipped_[0], why)) << skipped_[0];
  }

  // After a bad vm-b file, vm-a is still loaded.
  void ExpectOnlyA(const std::vector<VmRecord>& records) {
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].vm().vm_id(), "vm-a");
  }

  std::string dir_;
  std::optional<StateStore> store_;
  std::vector<std::string> skipped_;
};

// ---------------------------------------------------------------------------
// VM records
// ---------------------------------------------------------------------------

TEST_F(StateStoreTest, OpenCreatesTheDirectories) {
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/vms").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(store_->dir(), dir_);
}

TEST_F(StateStoreTest, OpenOfAnExistingDirectoryKeepsItsRecords) {
  SaveTwo();
  absl::StatusOr<StateStore> again = StateStore::Open(dir_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->LoadVms(&skipped_).size(), 2u);
}

TEST_F(StateStoreTest, EmptyDirectoryLoadsNothing) {
  EXPECT_TRUE(Load().empty());
  EXPECT_TRUE(skipped_.empty());
}

TEST_F(StateStoreTest, SavedRecordsLoadBackEqual) {
  std::vector<VmRecord> saved = {Record("vm-a", 1), Record("vm-b", 2), Record("vm-c", 3)};
  for (const VmRecord& record : saved) ASSERT_TRUE(store_->SaveVm(record).ok());
  std::vector<VmRecord> loaded = Load();
  EXPECT_TRUE(skipped_.empty()) << ::testing::PrintToString(skipped_);
  ASSERT_EQ(loaded.size(), saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(loaded[i], saved[i]))
        << loaded[i].DebugString() << "\nvs\n"
        << saved[i].DebugString();
  }
}

TEST_F(StateStoreTest, RecordFileIsNamedAfterTheVmAndNoTemporaryRemains) {
  SaveTwo();
  EXPECT_TRUE(Exists(VmPath("vm-a")));
  EXPECT_FALSE(Exists(VmPath("vm-a") + ".tmp"));
}

TEST_F(StateStoreTest, SavingAgainReplacesTheRecord) {
  ASSERT_TRUE(store_->SaveVm(Record("vm-a", 1)).ok());
  ASSERT_TRUE(store_->SaveVm(Record("vm-a", 7)).ok());
  std::vector<VmRecord> loaded = Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].pid(), 7);
}

TEST_F(StateStoreTest, AFailedWriteLeavesTheOldRecordAndNoTemporaryFile) {
  SaveTwo();
  bool full = true;
  absl::StatusOr<StateStore> store = StateStore::Open(dir_, [&full](const std::string& path) {
    return full ? absl::ResourceExhaustedError(path + ": No space left on device")
                : absl::OkStatus();
  });
  ASSERT_TRUE(store.ok());
  absl::Status saved = store->SaveVm(Record("vm-a", 99));
  EXPECT_EQ(saved.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(saved.message(), "vm-a.rec.tmp")) << saved;
  EXPECT_NE(::access((VmPath("vm-a") + ".tmp").c_str(), F_OK), 0);
  std::vector<VmRecord> records = Load();
  EXPECT_TRUE(skipped_.empty());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].pid(), 1);  // the record saved before the failure
  full = false;
  ASSERT_TRUE(store->SaveVm(Record("vm-a", 99)).ok());
  EXPECT_EQ(Load()[0].pid(), 99);
}

TEST_F(StateStoreTest, DeleteVmRemovesItsRecord) {
  SaveTwo();
  ASSERT_TRUE(store_->DeleteVm("vm-a").ok());
  std::vector<VmRecord> loaded = Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].vm().vm_id(), "vm-b");
  EXPECT_FALSE(Exists(VmPath("vm-a")));
}

TEST_F(StateStoreTest, DeletingAnUnknownVmIsFine) {
  EXPECT_TRUE(store_->DeleteVm("never-saved").ok());
}

// ---------------------------------------------------------------------------
// Damaged files are skipped, with a reason
// ---------------------------------------------------------------------------

TEST_F(StateStoreTest, TornRecordIsSkipped) {
  SaveTwo();
  ASSERT_EQ(::truncate(VmPath("vm-b").c_str(), 20), 0);
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "torn");
}

TEST_F(StateStoreTest, RecordCutInsideItsHeaderIsSkipped) {
  SaveTwo();
  ASSERT_EQ(::truncate(VmPath("vm-b").c_str(), 10), 0);
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "too short");
}

TEST_F(StateStoreTest, RecordWithAFlippedPayloadByteIsSkipped) {
  SaveTwo();
  std::string file = ReadFile(VmPath("vm-b"));
  file[file.size() / 2 + 8] ^= 0x01;
  WriteFile(VmPath("vm-b"), file);
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "checksum mismatch");
}

TEST_F(StateStoreTest, RecordWithAFlippedLengthByteIsSkipped) {
  SaveTwo();
  std::string file = ReadFile(VmPath("vm-b"));
  file[4] ^= 0x40;
  WriteFile(VmPath("vm-b"), file);
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "torn");
}

TEST_F(StateStoreTest, RecordWithTrailingBytesIsSkipped) {
  SaveTwo();
  WriteFile(VmPath("vm-b"), ReadFile(VmPath("vm-b")) + "extra");
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "torn");
}

TEST_F(StateStoreTest, ZeroLengthRecordIsSkipped) {
  SaveTwo();
  WriteFile(VmPath("vm-b"), "");
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "bad magic or too short");
}

TEST_F(StateStoreTest, GarbageRecordIsSkipped) {
  SaveTwo();
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 7919) >> 3));
  WriteFile(VmPath("vm-b"), garbage);
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "bad magic");
}

TEST_F(StateStoreTest, WellFramedPayloadThatIsNotARecordIsSkipped) {
  SaveTwo();
  // Field 1 (vm) as a length-delimited field that runs past the end.
  WriteFile(VmPath("vm-b"), StateStore::Frame("\x0a\x7f"));
  ExpectOnlyA(Load());
  ExpectSkippedOne("vm-b.rec", "does not parse");
}

TEST_F(StateStoreTest, RecordUnderAnotherVmsNameIsSkipped) {
  SaveTwo();
  WriteFile(VmPath("vm-c"), ReadFile(VmPath("vm-a")));
  std::vector<VmRecord> loaded = Load();
  ASSERT_EQ(loaded.size(), 2u);
  ExpectSkippedOne("vm-c.rec", "names VM \"vm-a\"");
}

// A crash between writing the temporary file and renaming it leaves
// "<id>.rec.tmp" beside the previous record, which is still whole.
TEST_F(StateStoreTest, LeftoverTemporaryFileIsSkippedAndRemoved) {
  SaveTwo();
  WriteFile(VmPath("vm-a") + ".tmp", "HSR1 half-written");
  std::vector<VmRecord> loaded = Load();
  EXPECT_EQ(loaded.size(), 2u);
  ExpectSkippedOne("vm-a.rec.tmp", "leftover of an interrupted write");
  EXPECT_FALSE(Exists(VmPath("vm-a") + ".tmp"));
  EXPECT_TRUE(Exists(VmPath("vm-a")));
}

TEST_F(StateStoreTest, SeveralBadFilesAreEachDescribed) {
  SaveTwo();
  WriteFile(VmPath("vm-b"), "");
  WriteFile(VmPath("vm-c"), "junk");
  WriteFile(VmPath("vm-d") + ".tmp", "");
  ExpectOnlyA(Load());
  EXPECT_EQ(skipped_.size(), 3u) << ::testing::PrintToString(skipped_);
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

TEST(StateStoreFrame, RoundTrips) {
  for (const std::string& payload :
       {std::string(), std::string("x"), std::string("a\0b", 3), std::string(100000, 'z')}) {
    absl::StatusOr<std::string> unframed = StateStore::Unframe(StateStore::Frame(payload));
    ASSERT_TRUE(unframed.ok()) << unframed.status();
    EXPECT_EQ(*unframed, payload);
  }
}

TEST(StateStoreFrame, HeaderIsMagicLengthAndHash) {
  std::string framed = StateStore::Frame("hello");
  ASSERT_EQ(framed.size(), 4u + 4u + 8u + 5u);
  EXPECT_EQ(framed.substr(0, 4), "HSR1");
  uint32_t length;
  std::memcpy(&length, framed.data() + 4, 4);
  EXPECT_EQ(length, 5u);
  EXPECT_EQ(framed.substr(16), "hello");
}

TEST(StateStoreFrame, ShortOrForeignInputIsDataLoss) {
  for (const std::string& file : {std::string(), std::string("HSR1"), std::string(15, '\0'),
                                  std::string("HSR2") + std::string(12, '\0')}) {
    absl::StatusOr<std::string> unframed = StateStore::Unframe(file);
    EXPECT_EQ(unframed.status().code(), absl::StatusCode::kDataLoss) << file.size();
  }
}

TEST(StateStoreFrame, EveryFlippedBitIsDetected) {
  std::string framed = StateStore::Frame("some payload");
  for (size_t i = 0; i < framed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = framed;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
      EXPECT_EQ(StateStore::Unframe(damaged).status().code(), absl::StatusCode::kDataLoss)
          << "byte " << i << " bit " << bit;
    }
  }
}

TEST(StateStoreFrame, EveryTruncationIsDetected) {
  std::string framed = StateStore::Frame("some payload");
  for (size_t n = 0; n < framed.size(); ++n) {
    EXPECT_EQ(StateStore::Unframe(framed.substr(0, n)).status().code(), absl::StatusCode::kDataLoss)
        << n;
  }
}

// ---------------------------------------------------------------------------
// Agent state
// ---------------------------------------------------------------------------

TEST_F(StateStoreTest, AgentStateRoundTrips) {
  AgentState state;
  state.set_resource_version(42);
  ASSERT_TRUE(store_->SaveAgent(state).ok());
  EXPECT_EQ(store_->LoadAgent().resource_version(), 42u);
  state.set_resource_version(43);
  ASSERT_TRUE(store_->SaveAgent(state).ok());
  EXPECT_EQ(store_->LoadAgent().resource_version(), 43u);
}

TEST_F(StateStoreTest, AgentStateIsNotAVmRecord) {
  AgentState state;
  state.set_resource_version(42);
  ASSERT_TRUE(store_->SaveAgent(state).ok());
  EXPECT_TRUE(Load().empty());
  EXPECT_TRUE(skipped_.empty());
}

TEST_F(StateStoreTest, MissingAgentStateIsTheDefault) {
  EXPECT_EQ(store_->LoadAgent().resource_version(), 0u);
}

TEST_F(StateStoreTest, CorruptAgentStateIsTheDefault) {
  AgentState state;
  state.set_resource_version(42);
  ASSERT_TRUE(store_->SaveAgent(state).ok());
  std::string file = ReadFile(dir_ + "/agent.rec");
  file.back() ^= 0x01;
  WriteFile(dir_ + "/agent.rec", file);
  EXPECT_EQ(store_->LoadAgent().resource_version(), 0u);
  WriteFile(dir_ + "/agent.rec", "");
  EXPECT_EQ(store_->LoadAgent().resource_version(), 0u);
}

// A payload that is framed correctly but fails to parse half-way must not
// leave the fields parsed before the failure.
TEST_F(StateStoreTest, AgentStateThatDoesNotParseIsTheDefault) {
  // resource_version = 5, then field 2 as a length-delimited field that runs
  // past the end.
  WriteFile(dir_ + "/agent.rec", StateStore::Frame(std::string("\x08\x05\x12\x7f", 4)));
  EXPECT_EQ(store_->LoadAgent().resource_version(), 0u);
}

}  // namespace
}  // namespace hearth::agent
