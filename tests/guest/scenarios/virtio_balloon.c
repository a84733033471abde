// balloon: the first virtio-balloon device.
//   - prints the target (config num_pages, 4 KiB pages) and, if
//     hearth.expect_balloon_pages=N is given, requires it to equal N;
//   - inflates that many pages taken from the heap (never touched again),
//     in batches of 256 PFNs, writes actual; deflates half, writes actual;
//   - with VIRTIO_BALLOON_F_STATS_VQ: posts the stats buffer right after
//     DRIVER_OK, waits (hearth.timeout_ms from the post) for the device to
//     return it, refills it and posts it once more.
#include <stdint.h>

#include "boot/cmdline.h"
#include "console/console.h"
#include "kernel/heap.h"
#include "kernel/test.h"
#include "kernel/time.h"
#include "scenarios/scenario.h"
#include "scenarios/virtio_common.h"
#include "virtio/balloon.h"

#define HEAP_RESERVE (8ull << 20)  // left for rings and buffers

static uint64_t balloon_main(uint64_t unused) {
  (void)unused;
  virtio_probe();
  struct virtio_dev *d = virtio_find(VIRTIO_ID_BALLOON, 0);
  if (d == NULL) test_fail("no virtio balloon device");
  static struct virtio_balloon b;
  const char *err = balloon_init(&b, d);
  if (err) test_fail("%s", err);
  uint64_t stats_deadline = time_deadline_us(virtio_timeout_us());
  uint64_t stats_posted = time_us();
  if (b.stats_vq && (err = balloon_post_stats(&b)) != NULL) test_fail("%s", err);

  uint32_t target = balloon_num_pages(&b);
  printk("balloon: num_pages=%u features 0x%lx (offered 0x%lx)\n", target, d->features, d->offered);
  uint64_t expect;
  if (cmdline_get_u64("hearth.expect_balloon_pages", &expect) && expect != target) {
    test_fail("num_pages %u, hearth.expect_balloon_pages=%lu", target, expect);
  }
  uint64_t bytes = (uint64_t)target * BALLOON_PAGE_SIZE;
  if (bytes + HEAP_RESERVE > heap_free_bytes()) {
    test_fail("target %u pages exceeds the guest's free heap (%lu KiB)", target,
              heap_free_bytes() / 1024);
  }
  uint64_t pages = target ? (uint64_t)heap_alloc(bytes, BALLOON_PAGE_SIZE) : 0;
  if ((err = balloon_inflate(&b, pages, target)) != NULL) test_fail("inflate: %s", err);
  balloon_set_actual(&b, target);
  printk("balloon: inflated %u pages at 0x%lx, actual=%u\n", target, pages, balloon_actual(&b));
  uint32_t back = target / 2;
  if ((err = balloon_deflate(&b, pages, back)) != NULL) test_fail("deflate: %s", err);
  balloon_set_actual(&b, target - back);
  printk("balloon: deflated %u pages, actual=%u\n", back, balloon_actual(&b));

  if (b.stats_vq) {
    if (virtq_wait(b.stats_vq, NULL, VIRTIO_IRQ, time_left_us(stats_deadline)) != b.stats) {
      test_fail("stats buffer not returned within %lu ms", virtio_timeout_us() / 1000);
    }
    printk("balloon: stats buffer returned after %lu ms, posting it again\n",
           (time_us() - stats_posted) / 1000);
    if ((err = balloon_post_stats(&b)) != NULL) test_fail("%s", err);
  } else {
    printk("balloon: no VIRTIO_BALLOON_F_STATS_VQ\n");
  }
  test_pass();
}

static void balloon(void) { virtio_scenario(balloon_main); }
SCENARIO(balloon, balloon);
