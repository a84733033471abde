// Shared by the virtio scenarios: running a scenario body at CPL3 and the
// block test-image pattern.
#ifndef GUEST_SCENARIOS_VIRTIO_COMMON_H_
#define GUEST_SCENARIOS_VIRTIO_COMMON_H_

#include <stdbool.h>
#include <stdint.h>

#include "arch/user.h"
#include "virtio/mmio.h"

// From a scenario's run() (CPL0, interrupts off): calibrates the TSC, then
// runs fn at CPL3 with interrupts enabled (device interrupts arrive there;
// CPL3 code runs natively on this host). fn must end the test.
void virtio_scenario(user_fn fn) __attribute__((noreturn));

// The test images (written by the host test): every 512-byte sector s is
//   bytes 0-15   magic ("HEARTH-SECTOR   ", or "HEARTH-WRITTEN  " for a
//                sector the guest wrote)
//   bytes 16-19  s, u32 little-endian
//   byte j >= 20 (s + j) & 0xff
#define BLK_MAGIC_IMAGE "HEARTH-SECTOR   "
#define BLK_MAGIC_WRITTEN "HEARTH-WRITTEN  "
void blk_pattern_fill(uint8_t *sector_buf, uint64_t sector, const char *magic);
// Checks |n| sectors starting at |first|. Each may carry either magic if it
// is the hearth.blk_write_sector (an earlier run may have written it).
// Returns NULL or a description of the first mismatch.
const char *blk_pattern_check(const uint8_t *buf, uint64_t first, uint32_t n,
                              uint64_t written_sector);
// hearth.blk_write_sector (default 100).
uint64_t blk_write_sector(void);

#endif  // GUEST_SCENARIOS_VIRTIO_COMMON_H_
