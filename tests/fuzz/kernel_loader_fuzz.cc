// The kernel and initrd loaders (vmm/loader/kernel_loader.h): any bytes as a
// kernel image, ELF or bzImage, into 16 MiB of guest RAM. What loads must
// lie in RAM above 1 MiB with its entry point inside it, and an initrd must
// land page-aligned between the kernel's end and the limit it allows.
//
// Input: initrd length u16, then the kernel image; the initrd is the
// image's first `initrd length % 8192` bytes.
#include <algorithm>
#include <string>

#include "tests/fuzz/fuzz_support.h"
#include "vmm/loader/image_source.h"
#include "vmm/loader/kernel_loader.h"
#include "vmm/memory/guest_memory.h"

namespace {
// From vmm/arch/x86_64/layout.h: RAM below 1 MiB holds the boot structures.
constexpr uint64_t kHighMemStart = 1 << 20;
constexpr uint64_t kPageSize = 4096;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  fuzz::FuzzInput input(data, size);
  const size_t initrd_length = input.Get<uint16_t>() % 8192;
  const std::string image = input.Rest();

  auto memory = memory::GuestMemory::CreateAnonymous(16 << 20, {});
  FUZZ_CHECK(memory.ok());
  auto kernel = loader::LoadKernel(loader::BufferImageSource(image, "kernel"), &*memory);
  if (!kernel.ok()) {
    FUZZ_CHECK(!kernel.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(kernel->start >= kHighMemStart);
  FUZZ_CHECK(kernel->start < kernel->end);
  FUZZ_CHECK(memory->Contains(kernel->start, kernel->end - kernel->start));
  FUZZ_CHECK(kernel->entry >= kernel->start && kernel->entry < kernel->end);
  FUZZ_CHECK(kernel->setup_header.has_value() == (image.compare(0, 4,
                                                                "\x7f"
                                                                "ELF") != 0));

  if (initrd_length == 0) return 0;
  auto initrd = loader::LoadInitrd(
      loader::BufferImageSource(image.substr(0, initrd_length), "initrd"), *kernel, &*memory);
  if (!initrd.ok()) return 0;
  FUZZ_CHECK(initrd->size == std::min(initrd_length, image.size()));
  FUZZ_CHECK(initrd->address % kPageSize == 0);
  FUZZ_CHECK(initrd->address >= kernel->end);
  FUZZ_CHECK(initrd->address + initrd->size - 1 <= kernel->initrd_addr_max);
  FUZZ_CHECK(memory->Contains(initrd->address, initrd->size));
  return 0;
}
