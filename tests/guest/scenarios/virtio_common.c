#include "scenarios/virtio_common.h"

#include "arch/x86.h"
#include "boot/cmdline.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "lib/format.h"
#include "lib/string.h"
#include "virtio/blk.h"

#define DEFAULT_WRITE_SECTOR 100

void virtio_scenario(user_fn fn) {
  time_init();
  sti();  // user_call hands IF on to user mode
  user_call(fn, 0);
  test_fail("scenario returned without a result");
}

void blk_pattern_fill(uint8_t *buf, uint64_t sector, const char *magic) {
  memcpy(buf, magic, 16);
  uint32_t s = (uint32_t)sector;
  memcpy(buf + 16, &s, 4);
  for (uint32_t j = 20; j < BLK_SECTOR_SIZE; j++) buf[j] = (uint8_t)(sector + j);
}

const char *blk_pattern_check(const uint8_t *buf, uint64_t first, uint32_t n,
                              uint64_t written_sector) {
  static char why[96];
  static uint8_t want[BLK_SECTOR_SIZE];
  for (uint32_t i = 0; i < n; i++) {
    uint64_t s = first + i;
    const uint8_t *got = buf + (uint64_t)i * BLK_SECTOR_SIZE;
    const char *magic = BLK_MAGIC_IMAGE;
    if (s == written_sector && memcmp(got, BLK_MAGIC_WRITTEN, 16) == 0) magic = BLK_MAGIC_WRITTEN;
    blk_pattern_fill(want, s, magic);
    for (uint32_t j = 0; j < BLK_SECTOR_SIZE; j++) {
      if (got[j] != want[j]) {
        format(why, sizeof(why), "sector %lu byte %u is 0x%02x, want 0x%02x", s, j, got[j],
               want[j]);
        return why;
      }
    }
  }
  return NULL;
}

uint64_t blk_write_sector(void) {
  uint64_t s = DEFAULT_WRITE_SECTOR;
  cmdline_get_u64("hearth.blk_write_sector", &s);
  return s;
}
