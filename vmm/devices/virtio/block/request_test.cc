#include "vmm/devices/virtio/block/request.h"

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::FakeGuest;
using ::testing::HasSubstr;

std::string Header(uint32_t type, uint64_t sector) {
  std::string header(16, '\0');
  std::memcpy(header.data(), &type, 4);
  std::memcpy(header.data() + 8, &sector, 8);
  return header;
}

class BlockRequestTest : public ::testing::Test {
 protected:
  void AddReadable(const std::string& bytes) {
    chain.descriptors.push_back({guest.Put(bytes), static_cast<uint32_t>(bytes.size()), false});
    chain.readable_bytes += bytes.size();
  }
  void AddWritable(uint32_t length) {
    chain.descriptors.push_back({guest.Allocate(length), length, true});
    chain.writable_bytes += length;
  }
  absl::StatusOr<BlockRequest> Parse(uint64_t capacity = 1024, bool read_only = false) {
    error = BlockParseError{};
    return ParseBlockRequest(guest.memory_ref(), chain, capacity, read_only, &error);
  }
  // Expects a failure reported to the guest through the status byte.
  void ExpectStatus(const absl::StatusOr<BlockRequest>& request, uint8_t status,
                    const std::string& reason) {
    ASSERT_FALSE(request.ok());
    EXPECT_TRUE(error.status_writable);
    EXPECT_EQ(error.status, status);
    EXPECT_THAT(error.reason, HasSubstr(reason));
    EXPECT_THAT(request.status().message(), HasSubstr(reason));
  }

  FakeGuest guest;
  DescriptorChain chain;
  BlockParseError error;
};

TEST_F(BlockRequestTest, ParsesIn) {
  AddReadable(Header(kBlkTIn, 7));
  AddWritable(1024);
  AddWritable(1);
  absl::StatusOr<BlockRequest> request = Parse();
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->type, kBlkTIn);
  EXPECT_EQ(request->sector, 7u);
  EXPECT_EQ(request->data_length, 1024u);
}

TEST_F(BlockRequestTest, StatusByteIsTheLastWritableByteWhateverTheLayout) {
  // Header split in two; data and status in one writable descriptor.
  std::string header = Header(kBlkTIn, 3);
  AddReadable(header.substr(0, 5));
  AddReadable(header.substr(5));
  AddWritable(100);
  AddWritable(413);  // 512 data bytes + the status byte
  absl::StatusOr<BlockRequest> request = Parse();
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->sector, 3u);
  EXPECT_EQ(request->data_length, 512u);
}

TEST_F(BlockRequestTest, ParsesOutWithDataInTheHeaderDescriptor) {
  AddReadable(Header(kBlkTOut, 2) + std::string(512, 'd'));
  AddReadable(std::string(512, 'e'));
  AddWritable(1);
  absl::StatusOr<BlockRequest> request = Parse();
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->type, kBlkTOut);
  EXPECT_EQ(request->sector, 2u);
  EXPECT_EQ(request->data_length, 1024u);
}

TEST_F(BlockRequestTest, ParsesFlushWhateverItsSector) {
  AddReadable(Header(kBlkTFlush, ~0ull));
  AddWritable(1);
  absl::StatusOr<BlockRequest> request = Parse();
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->type, kBlkTFlush);
  EXPECT_EQ(request->data_length, 0u);
}

TEST_F(BlockRequestTest, ParsesGetIdWithA20ByteBuffer) {
  AddReadable(Header(kBlkTGetId, 0));
  AddWritable(20);
  AddWritable(1);
  absl::StatusOr<BlockRequest> request = Parse();
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->type, kBlkTGetId);
  EXPECT_EQ(request->data_length, kBlkIdBytes);
}

TEST_F(BlockRequestTest, GetIdWithAShortBufferIsAnIoError) {
  AddReadable(Header(kBlkTGetId, 0));
  AddWritable(19);
  AddWritable(1);
  ExpectStatus(Parse(), kBlkSIoErr, "GET_ID buffer shorter than 20 bytes");
}

TEST_F(BlockRequestTest, DataNotAMultipleOf512IsAnIoError) {
  AddReadable(Header(kBlkTIn, 0));
  AddWritable(100);
  AddWritable(1);
  ExpectStatus(Parse(), kBlkSIoErr, "data length 100 is not a multiple of 512");
}

TEST_F(BlockRequestTest, OutDataNotAMultipleOf512IsAnIoError) {
  AddReadable(Header(kBlkTOut, 0) + std::string(513, 'x'));
  AddWritable(1);
  ExpectStatus(Parse(), kBlkSIoErr, "data length 513 is not a multiple of 512");
}

TEST_F(BlockRequestTest, RangesMustLieWithinTheCapacity) {
  struct Case {
    uint64_t sector;
    uint32_t data;
    uint64_t capacity;
    bool ok;
  };
  const Case cases[] = {
      {6, 1024, 8, true},      // the last two sectors
      {7, 1024, 8, false},     // one past the end
      {8, 0, 8, true},         // empty, at the end
      {9, 0, 8, false},        // empty, beyond it
      {~0ull, 512, 8, false},  // sector * 512 would wrap
      {~0ull >> 9, 512, 8, false},
      {~0ull, 0, ~0ull, true},  // the largest possible disk
      {~0ull, 512, ~0ull, false},
      {~0ull - 1, 1024, ~0ull, false},
      {(~0ull) - 2, 1024, ~0ull, true},
  };
  for (const Case& c : cases) {
    chain.Clear();
    AddReadable(Header(kBlkTIn, c.sector));
    if (c.data > 0) AddWritable(c.data);
    AddWritable(1);
    absl::StatusOr<BlockRequest> request = Parse(c.capacity);
    EXPECT_EQ(request.ok(), c.ok) << c.sector << " +" << c.data << " cap " << c.capacity;
    if (!c.ok) {
      EXPECT_TRUE(error.status_writable);
      EXPECT_EQ(error.status, kBlkSIoErr);
      EXPECT_THAT(error.reason, HasSubstr("beyond the capacity"));
    }
    // The same rules for OUT.
    chain.Clear();
    AddReadable(Header(kBlkTOut, c.sector) + std::string(c.data, 'w'));
    AddWritable(1);
    EXPECT_EQ(Parse(c.capacity).ok(), c.ok) << "OUT " << c.sector;
  }
}

TEST_F(BlockRequestTest, NoStatusByteMakesTheChainUnusable) {
  AddReadable(Header(kBlkTIn, 0));
  absl::StatusOr<BlockRequest> request = Parse();
  ASSERT_FALSE(request.ok());
  EXPECT_FALSE(error.status_writable);
  EXPECT_THAT(error.reason, HasSubstr("no writable status byte"));
}

TEST_F(BlockRequestTest, ShortHeaderIsAnIoError) {
  AddReadable(Header(kBlkTIn, 0).substr(0, 15));
  AddWritable(1);
  ExpectStatus(Parse(), kBlkSIoErr, "header shorter than 16 bytes");
  chain.Clear();
  AddWritable(513);
  ExpectStatus(Parse(), kBlkSIoErr, "header shorter than 16 bytes");
}

TEST_F(BlockRequestTest, WritesToAReadOnlyDriveAreIoErrors) {
  AddReadable(Header(kBlkTOut, 0) + std::string(512, 'x'));
  AddWritable(1);
  ExpectStatus(Parse(1024, /*read_only=*/true), kBlkSIoErr, "read-only");
  // Reads are fine.
  chain.Clear();
  AddReadable(Header(kBlkTIn, 0));
  AddWritable(513);
  EXPECT_TRUE(Parse(1024, true).ok());
}

TEST_F(BlockRequestTest, UnknownTypesAreUnsupported) {
  for (uint32_t type : {2u, 3u, 11u, 13u, 0xffffffffu}) {
    chain.Clear();
    AddReadable(Header(type, 0));
    AddWritable(1);
    ExpectStatus(Parse(), kBlkSUnsupp, "unsupported request type");
  }
}

}  // namespace
}  // namespace hearth::virtio
