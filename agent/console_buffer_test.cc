#include "agent/console_buffer.h"

#include <atomic>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

// The byte a writer puts at absolute offset `offset` in the concurrency test.
char PatternByte(uint64_t offset) { return static_cast<char>('a' + offset % 26); }

TEST(ConsoleBuffer, NewBufferIsEmpty) {
  ConsoleBuffer buffer(16);
  EXPECT_EQ(buffer.begin(), 0u);
  EXPECT_EQ(buffer.end(), 0u);
  ConsoleBuffer::Chunk chunk = buffer.Read(0, 100);
  EXPECT_EQ(chunk.data, "");
  EXPECT_EQ(chunk.offset, 0u);
  EXPECT_EQ(chunk.dropped, 0u);
  EXPECT_FALSE(chunk.closed);
}

TEST(ConsoleBuffer, ReadReturnsAppendedBytesFromAnOffset) {
  ConsoleBuffer buffer(64);
  buffer.Append("hello ");
  buffer.Append("world");
  EXPECT_EQ(buffer.end(), 11u);
  EXPECT_EQ(buffer.Read(0, 100).data, "hello world");
  ConsoleBuffer::Chunk chunk = buffer.Read(6, 100);
  EXPECT_EQ(chunk.data, "world");
  EXPECT_EQ(chunk.offset, 6u);
  EXPECT_EQ(chunk.dropped, 0u);
}

TEST(ConsoleBuffer, ReadReturnsAtMostMaxBytes) {
  ConsoleBuffer buffer(64);
  buffer.Append("0123456789");
  ConsoleBuffer::Chunk chunk = buffer.Read(2, 3);
  EXPECT_EQ(chunk.data, "234");
  EXPECT_EQ(chunk.offset, 2u);
  EXPECT_EQ(buffer.Read(2, 0).data, "");
}

TEST(ConsoleBuffer, ReadAtOrBeyondTheEndIsEmpty) {
  ConsoleBuffer buffer(64);
  buffer.Append("abc");
  for (uint64_t offset : {3u, 4u, 1000u}) {
    ConsoleBuffer::Chunk chunk = buffer.Read(offset, 100);
    EXPECT_EQ(chunk.data, "") << offset;
    EXPECT_EQ(chunk.offset, offset);
    EXPECT_EQ(chunk.dropped, 0u);
    EXPECT_FALSE(chunk.closed);
  }
}

TEST(ConsoleBuffer, OverflowDropsTheOldestBytes) {
  ConsoleBuffer buffer(8);
  buffer.Append("0123");
  buffer.Append("456789");
  EXPECT_EQ(buffer.begin(), 2u);
  EXPECT_EQ(buffer.end(), 10u);
  ConsoleBuffer::Chunk chunk = buffer.Read(0, 100);
  EXPECT_EQ(chunk.data, "23456789");
  EXPECT_EQ(chunk.offset, 2u);
  EXPECT_EQ(chunk.dropped, 2u);
}

TEST(ConsoleBuffer, ReadInsideTheRetainedBytesDropsNothing) {
  ConsoleBuffer buffer(8);
  buffer.Append("0123456789");
  ConsoleBuffer::Chunk chunk = buffer.Read(5, 2);
  EXPECT_EQ(chunk.data, "56");
  EXPECT_EQ(chunk.offset, 5u);
  EXPECT_EQ(chunk.dropped, 0u);
}

TEST(ConsoleBuffer, AppendLargerThanTheCapacityKeepsItsTail) {
  ConsoleBuffer buffer(4);
  buffer.Append(std::string(1000, 'x') + "tail");
  EXPECT_EQ(buffer.begin(), 1000u);
  EXPECT_EQ(buffer.end(), 1004u);
  ConsoleBuffer::Chunk chunk = buffer.Read(10, 100);
  EXPECT_EQ(chunk.data, "tail");
  EXPECT_EQ(chunk.dropped, 990u);
}

TEST(ConsoleBuffer, ZeroCapacityCountsButKeepsNothing) {
  ConsoleBuffer buffer(0);
  buffer.Append("abc");
  EXPECT_EQ(buffer.end(), 3u);
  ConsoleBuffer::Chunk chunk = buffer.Read(0, 100);
  EXPECT_EQ(chunk.data, "");
  EXPECT_EQ(chunk.offset, 3u);
  EXPECT_EQ(chunk.dropped, 3u);
}

TEST(ConsoleBuffer, TailReturnsTheLastBytes) {
  ConsoleBuffer buffer(8);
  EXPECT_EQ(buffer.Tail(4), "");
  buffer.Append("0123456789");
  EXPECT_EQ(buffer.Tail(3), "789");
  EXPECT_EQ(buffer.Tail(100), "23456789");
  EXPECT_EQ(buffer.Tail(0), "");
}

TEST(ConsoleBuffer, ClosedOnlyOnceEverythingIsRead) {
  ConsoleBuffer buffer(64);
  buffer.Append("0123456789");
  buffer.Close();
  EXPECT_FALSE(buffer.Read(0, 4).closed);
  EXPECT_FALSE(buffer.Read(4, 4).closed);
  ConsoleBuffer::Chunk last = buffer.Read(8, 4);
  EXPECT_EQ(last.data, "89");
  EXPECT_TRUE(last.closed);
  EXPECT_TRUE(buffer.Read(10, 4).closed);
}

TEST(ConsoleBuffer, ClosedEmptyBufferReadsClosed) {
  ConsoleBuffer buffer(64);
  buffer.Close();
  ConsoleBuffer::Chunk chunk = buffer.Read(0, 4);
  EXPECT_EQ(chunk.data, "");
  EXPECT_TRUE(chunk.closed);
}

TEST(ConsoleBuffer, NotClosedBeforeClose) {
  ConsoleBuffer buffer(64);
  buffer.Append("abc");
  EXPECT_FALSE(buffer.Read(0, 100).closed);
}

TEST(ConsoleBuffer, EveryAppendAndCloseWakesEverySubscriber) {
  ConsoleBuffer buffer(64);
  int first = 0, second = 0;
  int id1 = buffer.Subscribe([&] { ++first; });
  int id2 = buffer.Subscribe([&] { ++second; });
  EXPECT_NE(id1, id2);
  EXPECT_EQ(buffer.subscribers(), 2u);
  buffer.Append("a");
  buffer.Append("b");
  buffer.Close();
  EXPECT_EQ(first, 3);
  EXPECT_EQ(second, 3);
}

TEST(ConsoleBuffer, UnsubscribedCallbackIsNotWoken) {
  ConsoleBuffer buffer(64);
  int first = 0, second = 0;
  int id1 = buffer.Subscribe([&] { ++first; });
  buffer.Subscribe([&] { ++second; });
  buffer.Append("a");
  buffer.Unsubscribe(id1);
  EXPECT_EQ(buffer.subscribers(), 1u);
  buffer.Append("b");
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 2);
}

TEST(ConsoleBuffer, UnsubscribingAnUnknownIdIsHarmless) {
  ConsoleBuffer buffer(64);
  buffer.Subscribe([] {});
  buffer.Unsubscribe(12345);
  EXPECT_EQ(buffer.subscribers(), 1u);
}

TEST(ConsoleBuffer, SubscribersAreNotWokenForOutputBeforeTheySubscribed) {
  ConsoleBuffer buffer(64);
  buffer.Append("early");
  int wakes = 0;
  buffer.Subscribe([&] { ++wakes; });
  EXPECT_EQ(wakes, 0);
}

// Wakes run outside the buffer's lock, so a wake may call back into the
// buffer (as StreamConsole's does) without deadlocking.
TEST(ConsoleBuffer, WakeMayReadTheBuffer) {
  ConsoleBuffer buffer(64);
  std::string seen;
  uint64_t next = 0;
  buffer.Subscribe([&] {
    ConsoleBuffer::Chunk chunk = buffer.Read(next, 100);
    seen += chunk.data;
    next = chunk.offset + chunk.data.size();
    buffer.Tail(1);
    buffer.end();
    buffer.begin();
    buffer.subscribers();
  });
  buffer.Append("abc");
  buffer.Append("def");
  EXPECT_EQ(seen, "abcdef");
}

TEST(ConsoleBuffer, WakeMayUnsubscribeItself) {
  ConsoleBuffer buffer(64);
  int wakes = 0;
  int id = 0;
  id = buffer.Subscribe([&] {
    ++wakes;
    buffer.Unsubscribe(id);
  });
  buffer.Append("a");
  buffer.Append("b");
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(buffer.subscribers(), 0u);
}

TEST(ConsoleBuffer, WakeMaySubscribeAnother) {
  ConsoleBuffer buffer(64);
  int inner = 0;
  bool subscribed = false;
  buffer.Subscribe([&] {
    if (!subscribed) buffer.Subscribe([&] { ++inner; });
    subscribed = true;
  });
  buffer.Append("a");  // the new subscriber was not in this round
  buffer.Append("b");
  EXPECT_EQ(inner, 1);
}

// A writer appends a known pattern while a reader follows it with Read: the
// reader sees each byte at its offset, and what it missed is accounted for
// in `dropped`.
TEST(ConsoleBuffer, ConcurrentReaderSeesConsistentChunks) {
  ConsoleBuffer buffer(64);
  constexpr uint64_t kTotal = 200000;
  std::thread writer([&] {
    uint64_t offset = 0;
    while (offset < kTotal) {
      std::string piece;
      for (int i = 0; i < 7 && offset < kTotal; ++i) piece.push_back(PatternByte(offset++));
      buffer.Append(piece);
    }
    buffer.Close();
  });
  uint64_t next = 0, received = 0, dropped = 0;
  bool bad = false;
  for (;;) {
    ConsoleBuffer::Chunk chunk = buffer.Read(next, 16);
    if (chunk.offset != next + chunk.dropped) bad = true;
    for (size_t i = 0; i < chunk.data.size(); ++i) {
      if (chunk.data[i] != PatternByte(chunk.offset + i)) bad = true;
    }
    received += chunk.data.size();
    dropped += chunk.dropped;
    next = chunk.offset + chunk.data.size();
    if (chunk.closed || bad) break;
  }
  writer.join();
  EXPECT_FALSE(bad) << "at offset " << next;
  EXPECT_EQ(next, kTotal);
  EXPECT_EQ(received + dropped, kTotal);
}

}  // namespace
}  // namespace hearth::agent
