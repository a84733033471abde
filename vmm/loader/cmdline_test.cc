#include "vmm/loader/cmdline.h"

#include <string>

#include "gtest/gtest.h"

namespace hearth::loader {
namespace {

TEST(Cmdline, AppendsWithSpaces) {
  Cmdline c(2048);
  ASSERT_TRUE(c.Append("console=ttyS0").ok());
  ASSERT_TRUE(c.Append("").ok());
  ASSERT_TRUE(c.Append("virtio_mmio.device=4K@0xd0000000:5").ok());
  EXPECT_EQ(c.str(), "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5");
  EXPECT_EQ(c.size_with_nul(), c.str().size() + 1);
}

TEST(Cmdline, EnforcesTheLimitIncludingNul) {
  Cmdline c(16);
  ASSERT_TRUE(c.Append(std::string(15, 'a')).ok());  // 15 + NUL = 16
  absl::Status s = c.Append("b");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("limit is 15"), absl::string_view::npos) << s;
  EXPECT_EQ(c.str().size(), 15u);  // unchanged
}

TEST(Cmdline, RejectsControlCharacters) {
  Cmdline c(2048);
  EXPECT_FALSE(c.Append(std::string("a\0b", 3)).ok());
  EXPECT_FALSE(c.Append("a\nb").ok());
  EXPECT_TRUE(c.Append("tab\tok").ok());
}

TEST(Cmdline, WritesNulTerminated) {
  memory::GuestMemory mem = *memory::GuestMemory::CreateAnonymous(1 << 20, {});
  Cmdline c(2048);
  ASSERT_TRUE(c.Append("root=/dev/vda").ok());
  ASSERT_TRUE(c.WriteTo(&mem, 0x20000).ok());
  char buf[32];
  ASSERT_TRUE(mem.Read(0x20000, buf, 14).ok());
  EXPECT_STREQ(buf, "root=/dev/vda");
  EXPECT_FALSE(c.WriteTo(&mem, (1 << 20) - 4).ok());
}

}  // namespace
}  // namespace hearth::loader
