#include "agent/console_buffer.h"

#include <algorithm>
#include <vector>

namespace hearth::agent {

void ConsoleBuffer::Append(absl::string_view data) {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mutex_);
    bytes_.insert(bytes_.end(), data.begin(), data.end());
    end_ += data.size();
    while (bytes_.size() > capacity_) bytes_.pop_front();
    for (const auto& [id, f] : subscribers_) wake.push_back(f);
  }
  for (auto& f : wake) f();
}

void ConsoleBuffer::Close() {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mutex_);
    closed_ = true;
    for (const auto& [id, f] : subscribers_) wake.push_back(f);
  }
  for (auto& f : wake) f();
}

ConsoleBuffer::Chunk ConsoleBuffer::Read(uint64_t offset, size_t max) const {
  absl::MutexLock lock(&mutex_);
  Chunk chunk;
  uint64_t begin = end_ - bytes_.size();
  uint64_t from = std::max(offset, begin);
  chunk.dropped = from - std::min(offset, from);
  chunk.offset = from;
  if (from < end_) {
    size_t start = static_cast<size_t>(from - begin);
    size_t n = std::min<size_t>(max, bytes_.size() - start);
    chunk.data.assign(bytes_.begin() + static_cast<long>(start),
                      bytes_.begin() + static_cast<long>(start + n));
  }
  chunk.closed = closed_ && chunk.offset + chunk.data.size() >= end_;
  return chunk;
}

std::string ConsoleBuffer::Tail(size_t max) const {
  absl::MutexLock lock(&mutex_);
  size_t n = std::min(max, bytes_.size());
  return std::string(bytes_.end() - static_cast<long>(n), bytes_.end());
}

uint64_t ConsoleBuffer::end() const {
  absl::MutexLock lock(&mutex_);
  return end_;
}

uint64_t ConsoleBuffer::begin() const {
  absl::MutexLock lock(&mutex_);
  return end_ - bytes_.size();
}

int ConsoleBuffer::Subscribe(std::function<void()> wake) {
  absl::MutexLock lock(&mutex_);
  int id = next_id_++;
  subscribers_[id] = std::move(wake);
  return id;
}

void ConsoleBuffer::Unsubscribe(int id) {
  absl::MutexLock lock(&mutex_);
  subscribers_.erase(id);
}

size_t ConsoleBuffer::subscribers() const {
  absl::MutexLock lock(&mutex_);
  return subscribers_.size();
}

}  // namespace hearth::agent
