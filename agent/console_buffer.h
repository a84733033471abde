// A VM's serial console output as the agent keeps it: a bounded ring of
// the most recent bytes with absolute offsets since boot, shared by any
// number of StreamConsole readers, each told when new bytes arrive and how
// many it missed if it fell behind.
#ifndef HEARTH_AGENT_CONSOLE_BUFFER_H_
#define HEARTH_AGENT_CONSOLE_BUFFER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace hearth::agent {

class ConsoleBuffer {
 public:
  explicit ConsoleBuffer(size_t capacity) : capacity_(capacity) {}

  // Appends guest output and wakes the subscribers (outside the lock).
  void Append(absl::string_view data);
  // No more output will come (the VM ended).
  void Close();

  struct Chunk {
    std::string data;
    uint64_t offset = 0;   // of data[0]
    uint64_t dropped = 0;  // bytes between the asked offset and `offset`
    bool closed = false;   // nothing after this, ever
  };
  // Up to `max` bytes from `offset` on (or from the oldest retained byte).
  Chunk Read(uint64_t offset, size_t max) const;
  // The last `max` bytes, for failure reasons.
  std::string Tail(size_t max) const;
  uint64_t end() const;
  uint64_t begin() const;

  // `wake` runs (on the appending thread) after every Append and Close.
  // Wakes run outside the buffer's lock, so they may call back into it.
  int Subscribe(std::function<void()> wake);
  // A wake already under way on another thread may still run after this
  // returns: whatever it captures must outlive it (hold it by shared_ptr).
  void Unsubscribe(int id);
  size_t subscribers() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mutex_;
  std::deque<char> bytes_ ABSL_GUARDED_BY(mutex_);
  uint64_t end_ ABSL_GUARDED_BY(mutex_) = 0;  // offset one past the last byte
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
  int next_id_ ABSL_GUARDED_BY(mutex_) = 1;
  std::map<int, std::function<void()>> subscribers_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace hearth::agent

#endif  // HEARTH_AGENT_CONSOLE_BUFFER_H_
