#include "vmm/loader/kernel_loader.h"

#include <elf.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/arch/x86_64/layout.h"

namespace hearth::loader {
namespace {

using x86::layout::kMiB;

struct Segment {
  uint64_t paddr;
  std::string bytes;
  uint64_t memsz;  // >= bytes.size()
};

// A minimal ELF64 executable: header, program headers, then segment bytes.
std::string MakeElf(uint64_t entry, const std::vector<Segment>& segments) {
  Elf64_Ehdr ehdr = {};
  std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
  ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  ehdr.e_type = ET_EXEC;
  ehdr.e_machine = EM_X86_64;
  ehdr.e_entry = entry;
  ehdr.e_phoff = sizeof(Elf64_Ehdr);
  ehdr.e_phentsize = sizeof(Elf64_Phdr);
  ehdr.e_phnum = static_cast<uint16_t>(segments.size());
  std::string out(reinterpret_cast<char*>(&ehdr), sizeof(ehdr));
  uint64_t data_offset = sizeof(Elf64_Ehdr) + segments.size() * sizeof(Elf64_Phdr);
  std::string data;
  for (const Segment& s : segments) {
    Elf64_Phdr p = {};
    p.p_type = PT_LOAD;
    p.p_offset = data_offset + data.size();
    p.p_paddr = s.paddr;
    p.p_vaddr = s.paddr;
    p.p_filesz = s.bytes.size();
    p.p_memsz = s.memsz;
    out.append(reinterpret_cast<char*>(&p), sizeof(p));
    data += s.bytes;
  }
  return out + data;
}

std::string MakeBzImage(uint16_t version, uint16_t xloadflags, std::string payload,
                        uint32_t init_size = 0) {
  const uint8_t setup_sects = 1;
  std::string image((setup_sects + 1) * 512, '\0');
  x86::SetupHeader hdr = {};
  hdr.setup_sects = setup_sects;
  hdr.boot_flag = x86::kBootFlagMagic;
  hdr.header = x86::kHdrSMagic;
  hdr.version = version;
  hdr.loadflags = x86::kLoadedHigh;
  hdr.xloadflags = xloadflags;
  hdr.initrd_addr_max = 0x7fffffff;
  hdr.init_size = init_size;
  std::memcpy(image.data() + x86::kSetupHeaderOffset, &hdr, sizeof(hdr));
  return image + payload;
}

class LoaderTest : public ::testing::Test {
 protected:
  memory::GuestMemory mem = *memory::GuestMemory::CreateAnonymous(64 * kMiB, {});
};

TEST_F(LoaderTest, ElfSegmentsLandAtPhysicalAddressesWithBss) {
  std::string elf = MakeElf(0x100004, {{0x100000, "hello", 16}, {0x200000, "abcd", 0x1000}});
  auto kernel = LoadKernel(BufferImageSource(elf, "kernel"), &mem);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  EXPECT_EQ(kernel->entry, 0x100004u);
  EXPECT_EQ(kernel->start, 0x100000u);
  EXPECT_EQ(kernel->end, 0x201000u);
  EXPECT_FALSE(kernel->setup_header.has_value());
  char buf[6] = {};
  ASSERT_TRUE(mem.Read(0x100000, buf, 5).ok());
  EXPECT_STREQ(buf, "hello");
  // bss is left alone: not resident (each segment's file bytes touch one
  // page), and zero because guest RAM starts zeroed.
  EXPECT_EQ(mem.ResidentBytes(), 2 * 4096u);
  EXPECT_EQ(*mem.ReadObject<uint32_t>(0x200f00), 0u);
}

TEST_F(LoaderTest, ElfErrorsNameTheProblem) {
  struct Case {
    std::string image;
    const char* expected;
  };
  std::string good = MakeElf(0x100000, {{0x100000, "x", 1}});
  std::string truncated = good.substr(0, good.size() - 1);
  std::string bad_machine = good;
  bad_machine[offsetof(Elf64_Ehdr, e_machine)] = 3;  // EM_386
  std::vector<Case> cases = {
      {truncated, "truncated"},
      {good.substr(0, 40), "truncated"},
      {bad_machine, "not a little-endian x86_64"},
      {MakeElf(0x100000, {}), "bad program header table"},
      {MakeElf(0x100000, {{0x100000, "abc", 2}}), "p_filesz > p_memsz"},
      {MakeElf(0x500000, {{0x100000, "x", 1}}), "entry point 0x500000"},
      {MakeElf(0x1000, {{0x1000, "x", 1}}), "below 1 MiB"},
      {MakeElf(0x100000, {{0x3fff000, "x", 0x2000}}), "does not fit in guest RAM"},
      {MakeElf(0x100000, {{0x100000, "x", 0x2000}, {0x101000, "y", 1}}), "overlap"},
  };
  for (const Case& c : cases) {
    auto kernel = LoadKernel(BufferImageSource(c.image, "kernel"), &mem);
    ASSERT_FALSE(kernel.ok()) << c.expected;
    EXPECT_NE(kernel.status().message().find(c.expected), absl::string_view::npos)
        << kernel.status();
  }
}

TEST_F(LoaderTest, HugeSegmentSizesDoNotWrap) {
  std::string elf = MakeElf(0x100000, {{0x100000, "x", ~0ull}});
  EXPECT_FALSE(LoadKernel(BufferImageSource(elf, "kernel"), &mem).ok());
}

TEST_F(LoaderTest, BzImageLoadsAtOneMebibyte) {
  std::string image = MakeBzImage(0x20f, x86::kXlfKernel64, "PAYLOAD", 0x10000);
  auto kernel = LoadKernel(BufferImageSource(image, "kernel"), &mem);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  EXPECT_EQ(kernel->start, 1 * kMiB);
  EXPECT_EQ(kernel->entry, 1 * kMiB + 0x200);
  EXPECT_EQ(kernel->end, 1 * kMiB + 0x10000);
  ASSERT_TRUE(kernel->setup_header.has_value());
  EXPECT_EQ(kernel->setup_header->version, 0x20f);
  char buf[8] = {};
  ASSERT_TRUE(mem.Read(1 * kMiB, buf, 7).ok());
  EXPECT_STREQ(buf, "PAYLOAD");
}

TEST_F(LoaderTest, BzImageErrors) {
  EXPECT_NE(LoadKernel(BufferImageSource(MakeBzImage(0x20a, 1, "x"), "k"), &mem)
                .status()
                .message()
                .find("too old"),
            absl::string_view::npos);
  EXPECT_NE(LoadKernel(BufferImageSource(MakeBzImage(0x20f, 0, "x"), "k"), &mem)
                .status()
                .message()
                .find("no 64-bit entry"),
            absl::string_view::npos);
  EXPECT_NE(LoadKernel(BufferImageSource(MakeBzImage(0x20f, 1, ""), "k"), &mem)
                .status()
                .message()
                .find("no protected-mode kernel"),
            absl::string_view::npos);
  EXPECT_NE(LoadKernel(BufferImageSource(std::string(600, 'z'), "k"), &mem)
                .status()
                .message()
                .find("neither an ELF file nor a bzImage"),
            absl::string_view::npos);
  EXPECT_FALSE(LoadKernel(BufferImageSource("", "k"), &mem).ok());
  // init_size larger than RAM.
  EXPECT_NE(LoadKernel(BufferImageSource(MakeBzImage(0x20f, 1, "x", 0x7fffffff), "k"), &mem)
                .status()
                .message()
                .find("does not fit"),
            absl::string_view::npos);
}

TEST_F(LoaderTest, InitrdGoesToTopOfLowRam) {
  LoadedKernel kernel;
  kernel.end = 2 * kMiB;
  kernel.initrd_addr_max = x86::layout::kDefaultInitrdAddrMax;
  auto initrd = LoadInitrd(BufferImageSource(std::string(5000, 'i'), "initrd"), kernel, &mem);
  ASSERT_TRUE(initrd.ok()) << initrd.status();
  EXPECT_EQ(initrd->size, 5000u);
  EXPECT_EQ(initrd->address % x86::layout::kPageSize, 0u);
  EXPECT_LE(initrd->address + initrd->size, 64 * kMiB);
  EXPECT_GT(initrd->address + initrd->size, 64 * kMiB - x86::layout::kPageSize * 2);
  // Too big to fit above the kernel.
  EXPECT_FALSE(
      LoadInitrd(BufferImageSource(std::string(63 * kMiB, 'i'), "initrd"), kernel, &mem).ok());
  EXPECT_FALSE(LoadInitrd(BufferImageSource("", "initrd"), kernel, &mem).ok());
}

}  // namespace
}  // namespace hearth::loader
