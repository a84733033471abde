#include "kernel/heap.h"

#include "boot/boot_info.h"
#include "kernel/layout.h"
#include "kernel/spinlock.h"
#include "kernel/test.h"

static struct spinlock heap_lock;
static uint64_t heap_next;
static uint64_t heap_end;

void heap_init(void) {
  heap_next = HEAP_BASE;
  heap_end = boot_mem_ram_end(HEAP_BASE);
  if (heap_end > MMIO_HOLE_BASE) heap_end = MMIO_HOLE_BASE;
  if (heap_end < heap_next) heap_end = heap_next;  // no RAM there: empty heap
}

void *heap_alloc(size_t size, size_t align) {
  if (align < 16) align = 16;
  spin_lock(&heap_lock);
  uint64_t p = (heap_next + align - 1) & ~(uint64_t)(align - 1);
  if (p + size > heap_end || p + size < p) {
    spin_unlock(&heap_lock);
    test_fail("heap exhausted: %zu bytes wanted, 0x%lx-0x%lx", size, heap_next, heap_end);
  }
  heap_next = p + size;
  spin_unlock(&heap_lock);
  return (void *)p;
}

uint64_t heap_free_bytes(void) { return heap_end - heap_next; }
