// Start-up for every fuzz target, under libFuzzer and under fuzz_driver:
// both call LLVMFuzzerInitialize once before the first input.
#include "glog/logging.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The code under test logs every malformed request it refuses (rate
  // limited per call site, but a fuzzer makes millions): keep stderr for
  // crash reports. FLAGS_minloglevel is glog's own flag.
  FLAGS_minloglevel = google::GLOG_FATAL;
  return 0;
}
