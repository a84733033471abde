// cpu_loop: a CPU-bound integer loop at CPL3, timed with the TSC. Proves that
// user mode works and gives benchmarks a fixed amount of guest work.
//   hearth.iterations=N  loop count (default 10,000,000)
#include <stdint.h>

#include "arch/user.h"
#include "arch/x86.h"
#include "boot/cmdline.h"
#include "console/console.h"
#include "kernel/test.h"
#include "scenarios/scenario.h"

#define DEFAULT_ITERATIONS 10000000ull

struct loop_job {
  uint64_t iterations;
  uint64_t result;
  uint64_t cycles;
  unsigned cpl;
};

// xorshift64* mixing: cheap, not optimizable into a closed form.
static uint64_t mix_loop(uint64_t arg) {
  struct loop_job *job = (struct loop_job *)arg;
  job->cpl = current_cpl();
  uint64_t x = 0x9e3779b97f4a7c15ull, acc = 0;
  uint64_t start = rdtsc();
  for (uint64_t i = 0; i < job->iterations; i++) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    acc += x * 0x2545f4914f6cdd1dull;
  }
  job->cycles = rdtsc() - start;
  job->result = acc;
  return 0;
}

static void run(void) {
  struct loop_job job = {DEFAULT_ITERATIONS, 0, 0, 0};
  cmdline_get_u64("hearth.iterations", &job.iterations);
  user_call(mix_loop, (uint64_t)&job);
  printk("cpu_loop: iterations=%lu result=0x%016lx tsc_cycles=%lu cpl=%u\n", job.iterations,
         job.result, job.cycles, job.cpl);
  if (job.cpl != 3) test_fail("loop ran at cpl %u, not 3", job.cpl);
  test_pass();
}
SCENARIO(cpu_loop, run);
