#include "vmm/devices/virtio/chain_io.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::FakeGuest;
using ::testing::HasSubstr;

constexpr uint64_t kPage = 4096;

class ChainIoTest : public ::testing::Test {
 protected:
  // Appends a descriptor as Queue::Pop would produce it.
  void Add(uint64_t address, uint32_t length, bool writable) {
    chain.descriptors.push_back({address, length, writable});
    (writable ? chain.writable_bytes : chain.readable_bytes) += length;
  }
  // Splits `bytes` over readable descriptors of the given lengths, each in
  // its own, non-adjacent allocation.
  void AddReadable(const std::string& bytes, const std::vector<uint32_t>& lengths) {
    size_t at = 0;
    for (uint32_t length : lengths) {
      guest.Allocate(3);  // a gap, so pieces are never contiguous
      Add(guest.Put(bytes.substr(at, length)), length, false);
      at += length;
    }
    ASSERT_EQ(at, bytes.size());
  }
  std::vector<uint64_t> AddWritable(const std::vector<uint32_t>& lengths) {
    std::vector<uint64_t> addresses;
    for (uint32_t length : lengths) {
      guest.Allocate(5);
      addresses.push_back(guest.Allocate(length, 1));
      Add(addresses.back(), length, true);
    }
    return addresses;
  }
  std::string Read(uint64_t offset, size_t length, absl::Status* status = nullptr) {
    std::string out(length, '\0');
    absl::Status s = ReadFromChain(guest.memory_ref(), chain, offset,
                                   absl::MakeSpan(reinterpret_cast<uint8_t*>(out.data()), length));
    if (status != nullptr) *status = s;
    return s.ok() ? out : "";
  }
  absl::Status Write(uint64_t offset, const std::string& bytes) {
    return WriteToChain(
        guest.memory(), chain, offset,
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }

  FakeGuest guest;
  DescriptorChain chain;
};

TEST_F(ChainIoTest, ReadGathersAcrossOddDescriptorSplits) {
  const std::string text = "abcdefghijklmnop";
  AddReadable(text, {3, 1, 0, 7, 5});
  AddWritable({4});  // the writable part is not part of the readable stream
  EXPECT_EQ(Read(0, 16), text);
  for (uint64_t offset = 0; offset <= 16; ++offset) {
    for (uint64_t length = 0; offset + length <= 16; ++length) {
      EXPECT_EQ(Read(offset, length), text.substr(offset, length)) << offset << "+" << length;
    }
  }
}

TEST_F(ChainIoTest, ReadBeyondTheReadablePartFails) {
  AddReadable("0123456789", {4, 6});
  AddWritable({100});
  absl::Status status;
  Read(5, 6, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("readable part has 10 bytes; needed 11"));
  Read(11, 1, &status);
  EXPECT_FALSE(status.ok());
  // Zero bytes are always available.
  EXPECT_EQ(Read(10, 0, &status), "");
  EXPECT_TRUE(status.ok());
}

TEST_F(ChainIoTest, ReadOfAChainWithNoReadablePartFails) {
  AddWritable({16});
  absl::Status status;
  Read(0, 1, &status);
  EXPECT_THAT(status.message(), HasSubstr("readable part has 0 bytes"));
}

TEST_F(ChainIoTest, WriteScattersAcrossOddDescriptorSplitsAtAnOffset) {
  AddReadable("hdr", {3});
  std::vector<uint64_t> out = AddWritable({2, 5, 1, 8});
  ASSERT_TRUE(Write(3, "WXYZ0123").ok());
  // Stream positions 3..10: 2 bytes into the 2nd buffer (from its offset
  // 1), the whole 3rd, 4 bytes of the 4th.
  EXPECT_EQ(guest.Read(out[0], 2), std::string(2, '\0'));
  EXPECT_EQ(guest.Read(out[1], 5), std::string(1, '\0') + "WXYZ");
  EXPECT_EQ(guest.Read(out[2], 1), "0");
  EXPECT_EQ(guest.Read(out[3], 8), std::string("123") + std::string(5, '\0'));
  // The readable part is untouched.
  EXPECT_EQ(Read(0, 3), "hdr");
}

TEST_F(ChainIoTest, WriteBeyondTheWritablePartFails) {
  AddWritable({4, 4});
  absl::Status status = Write(5, "abcd");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("writable part has 8 bytes; needed 9"));
  EXPECT_TRUE(Write(4, "abcd").ok());
  EXPECT_TRUE(Write(8, "").ok());
}

TEST_F(ChainIoTest, IovecsCoverTheRequestedRangeAndSkipEmptyPieces) {
  const std::string text = "The quick brown fox";
  AddReadable(text, {4, 0, 6, 9});
  absl::StatusOr<std::vector<iovec>> iovecs = ReadableIovecs(guest.memory_ref(), chain, 2, 15);
  ASSERT_TRUE(iovecs.ok()) << iovecs.status();
  ASSERT_EQ(iovecs->size(), 3u);
  std::string gathered;
  for (const iovec& v : *iovecs) {
    EXPECT_GT(v.iov_len, 0u);
    gathered.append(static_cast<const char*>(v.iov_base), v.iov_len);
  }
  EXPECT_EQ(gathered, text.substr(2, 15));
  EXPECT_EQ((*iovecs)[0].iov_len, 2u);
  EXPECT_EQ((*iovecs)[1].iov_len, 6u);
  EXPECT_EQ((*iovecs)[2].iov_len, 7u);

  EXPECT_FALSE(ReadableIovecs(guest.memory_ref(), chain, 2, 18).ok());
  absl::StatusOr<std::vector<iovec>> none = ReadableIovecs(guest.memory_ref(), chain, 19, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(ChainIoTest, WritableIovecsPointIntoGuestMemory) {
  AddReadable("r", {1});
  std::vector<uint64_t> out = AddWritable({3, 10});
  absl::StatusOr<std::vector<iovec>> iovecs = WritableIovecs(guest.memory_ref(), chain, 1, 6);
  ASSERT_TRUE(iovecs.ok()) << iovecs.status();
  ASSERT_EQ(iovecs->size(), 2u);
  std::memcpy((*iovecs)[0].iov_base, "ab", 2);
  std::memcpy((*iovecs)[1].iov_base, "cdef", 4);
  EXPECT_EQ((*iovecs)[1].iov_len, 4u);
  EXPECT_EQ(guest.Read(out[0], 3), std::string(1, '\0') + "ab");
  EXPECT_EQ(guest.Read(out[1], 5), std::string("cdef") + '\0');

  absl::StatusOr<std::vector<iovec>> too_long = WritableIovecs(guest.memory_ref(), chain, 0, 14);
  EXPECT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(), HasSubstr("writable part has 13 bytes"));
}

// Bit `page` of region 0's dirty bitmap.
bool Dirty(const std::vector<uint64_t>& bitmap, uint64_t page) {
  return (bitmap[page / 64] >> (page % 64)) & 1;
}

TEST_F(ChainIoTest, WriteToChainMarksThePagesItWroteDirty) {
  // Writable buffers on pages 40 (last 10 bytes, spilling into 41) and 50.
  Add(41 * kPage - 10, 20, true);
  Add(50 * kPage, 100, true);
  guest.memory()->EnableDirtyTracking();  // a VM with track_dirty_pages
  guest.memory()->TakeDirtyBitmap(0);
  ASSERT_TRUE(Write(0, std::string(15, 'x')).ok());
  std::vector<uint64_t> bitmap = guest.memory()->TakeDirtyBitmap(0);
  EXPECT_TRUE(Dirty(bitmap, 40));
  EXPECT_TRUE(Dirty(bitmap, 41));
  EXPECT_FALSE(Dirty(bitmap, 50));
}

TEST_F(ChainIoTest, MarkWritableDirtyMarksOnlyTheFirstBytesOfTheWritableStream) {
  Add(10 * kPage, 8, false);         // readable: never marked
  Add(20 * kPage + 4090, 10, true);  // pages 20 and 21
  Add(30 * kPage, 2 * kPage, true);  // pages 30 and 31
  Add(40 * kPage, 16, true);         // page 40
  MarkWritableDirty(guest.memory(), chain, 1ull << 40);
  EXPECT_FALSE(Dirty(guest.memory()->TakeDirtyBitmap(0), 20)) << "not tracking: nothing marked";
  guest.memory()->EnableDirtyTracking();
  MarkWritableDirty(guest.memory(), chain, 10 + kPage + 1);
  std::vector<uint64_t> bitmap = guest.memory()->TakeDirtyBitmap(0);
  EXPECT_FALSE(Dirty(bitmap, 10));
  EXPECT_TRUE(Dirty(bitmap, 20));
  EXPECT_TRUE(Dirty(bitmap, 21));
  EXPECT_TRUE(Dirty(bitmap, 30));
  EXPECT_TRUE(Dirty(bitmap, 31));  // byte kPage of the 2nd buffer
  EXPECT_FALSE(Dirty(bitmap, 40));

  // More than the chain holds is clamped, not an error.
  MarkWritableDirty(guest.memory(), chain, 1ull << 40);
  bitmap = guest.memory()->TakeDirtyBitmap(0);
  EXPECT_TRUE(Dirty(bitmap, 40));
  EXPECT_FALSE(Dirty(bitmap, 10));

  MarkWritableDirty(guest.memory(), chain, 0);
  bitmap = guest.memory()->TakeDirtyBitmap(0);
  EXPECT_FALSE(Dirty(bitmap, 20));
}

}  // namespace
}  // namespace hearth::virtio
