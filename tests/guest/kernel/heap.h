// A bump allocator for drivers (virtqueues, DMA buffers): page-granular,
// identity-mapped (physical == virtual), never freed. It starts at HEAP_BASE
// (kernel/layout.h) and ends where the e820 RAM range containing HEAP_BASE
// ends. Memory is zeroed only if the loader gave zeroed RAM (it does on a
// fresh VM); callers that need zeroes clear it themselves.
#ifndef GUEST_KERNEL_HEAP_H_
#define GUEST_KERNEL_HEAP_H_

#include <stddef.h>
#include <stdint.h>

void heap_init(void);
// Returns |size| bytes aligned to |align| (a power of two, at least 16), or
// ends the test with a failure if the heap is exhausted.
void *heap_alloc(size_t size, size_t align);
// Bytes still available.
uint64_t heap_free_bytes(void);

#endif  // GUEST_KERNEL_HEAP_H_
