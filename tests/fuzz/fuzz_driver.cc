// main() for fuzz targets in normal (non-libFuzzer) builds: runs the target
// on every file of the seed corpus directories named on the command line,
// then on a fixed number of deterministic pseudo-random inputs (fresh bytes
// and mutations of the seeds), so the normal test suite exercises every
// fuzzer briefly and the ASan pass runs it under sanitizers. Same inputs
// every run: a failure here reproduces. If the target crashes, the input is
// written to $TEST_UNDECLARED_OUTPUTS_DIR/crash-input (or ./crash-input).
//
//   <target> [--runs=N] [corpus_dir_or_file...]     N defaults to 10000
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

constexpr size_t kMaxGeneratedSize = 4096;

// The input being run, for the crash handler (a test driver's only state).
const std::string* current_input = nullptr;
char crash_path[4096];

void OnCrash(int signal_number) {
  if (current_input != nullptr) {
    int fd = ::open(crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      (void)!::write(fd, current_input->data(), current_input->size());
      ::close(fd);
    }
    const char message[] = "fuzz_driver: crashing input written to ";
    (void)!::write(2, message, sizeof(message) - 1);
    (void)!::write(2, crash_path, std::strlen(crash_path));
    (void)!::write(2, "\n", 1);
  }
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The regular files of `path` (a directory, sorted) or `path` itself.
void CollectSeeds(const std::string& path, std::vector<std::string>* seeds) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "fuzz_driver: %s: %s\n", path.c_str(), std::strerror(errno));
    std::exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    seeds->push_back(ReadFile(path));
    return;
  }
  std::vector<std::string> names;
  if (DIR* dir = ::opendir(path.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] != '.') names.push_back(entry->d_name);
    }
    ::closedir(dir);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) CollectSeeds(path + "/" + name, seeds);
}

uint64_t Interesting(std::mt19937_64& rng) {
  static constexpr uint64_t kValues[] = {0,       1,          2,          16,     44,     255,
                                         256,     512,        4096,       0x7fff, 0x8000, 0xffff,
                                         0x10000, 0x7fffffff, 0xffffffff, ~0ull};
  return kValues[rng() % (sizeof(kValues) / sizeof(kValues[0]))];
}

// A few random edits of `input`: byte flips, interesting integers, inserted
// or deleted runs, truncation.
std::string Mutate(std::string input, std::mt19937_64& rng) {
  int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits; ++i) {
    size_t at = input.empty() ? 0 : rng() % input.size();
    switch (rng() % 6) {
      case 0:
        if (!input.empty()) input[at] = static_cast<char>(input[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        if (!input.empty()) input[at] = static_cast<char>(rng());
        break;
      case 2: {
        uint64_t value = Interesting(rng);
        size_t width = size_t{1} << (rng() % 4);
        if (at + width <= input.size()) std::memcpy(&input[at], &value, width);
        break;
      }
      case 3: {
        std::string run(1 + rng() % 16, '\0');
        for (char& c : run) c = static_cast<char>(rng());
        input.insert(std::min(at, input.size()), run);
        break;
      }
      case 4:
        if (!input.empty()) input.erase(at, 1 + rng() % 16);
        break;
      case 5:
        input.resize(at);
        break;
    }
  }
  return input;
}

void Run(const std::string& input) {
  current_input = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  current_input = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  long runs = 10000;
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--runs=", 7) == 0) {
      runs = std::strtol(argv[i] + 7, nullptr, 10);
    } else {
      CollectSeeds(argv[i], &seeds);
    }
  }
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  std::snprintf(crash_path, sizeof(crash_path), "%s/crash-input",
                outputs != nullptr ? outputs : ".");
  for (int s : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(s, OnCrash);
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);

  auto start = std::chrono::steady_clock::now();
  for (const std::string& seed : seeds) Run(seed);
  std::mt19937_64 rng(0x4845415254480001ull);  // fixed: reproducible runs
  for (long i = 0; i < runs; ++i) {
    std::string input;
    if (!seeds.empty() && rng() % 4 != 0) {
      input = Mutate(seeds[rng() % seeds.size()], rng);
    } else {
      input.resize(rng() % kMaxGeneratedSize);
      for (char& c : input) c = static_cast<char>(rng());
    }
    Run(input);
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  std::printf("fuzz_driver: %zu seed inputs and %ld generated inputs in %lld ms\n", seeds.size(),
              runs, static_cast<long long>(ms));
  return 0;
}
