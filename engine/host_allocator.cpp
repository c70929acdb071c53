#include "engine/host_allocator.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>

namespace vitscuda {

namespace {
constexpr size_t kAlignment = 64;

void* system_alloc(size_t bytes) { return std::aligned_alloc(kAlignment, bytes); }
}  // namespace

HostAllocator& HostAllocator::instance() {
  // Never destroyed: tensors with static storage duration may release into it at exit.
  static HostAllocator* allocator = new HostAllocator();
  return *allocator;
}

size_t HostAllocator::round_size(size_t bytes) {
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  if (rounded < kMinCachedBytes) return rounded;
  size_t power = kMinCachedBytes;
  while (power * 2 <= rounded) power *= 2;
  const size_t step = power / 8;
  return (rounded + step - 1) / step * step;
}

void* HostAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  if (size < kMinCachedBytes) return system_alloc(size);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Only blocks of the same size class: release() recomputes a block's size from the request.
    auto it = cache_.find(size);
    if (it != cache_.end()) {
      void* ptr = it->second;
      cache_.erase(it);
      stats_.cached_bytes -= size;
      stats_.live_bytes += size;
      stats_.max_live_bytes = std::max(stats_.max_live_bytes, stats_.live_bytes);
      ++stats_.cache_hits;
      return ptr;
    }
  }
  void* ptr = system_alloc(size);
  if (!ptr) {
    empty_cache();
    ptr = system_alloc(size);
    if (!ptr) return nullptr;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.live_bytes += size;
  stats_.max_live_bytes = std::max(stats_.max_live_bytes, stats_.live_bytes);
  ++stats_.system_allocations;
  return ptr;
}

void HostAllocator::release(void* ptr, size_t bytes) {
  if (!ptr) return;
  const size_t size = round_size(bytes);
  if (size < kMinCachedBytes) {
    std::free(ptr);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.live_bytes -= size;
  cache_.emplace(size, ptr);
  stats_.cached_bytes += size;
  trim_locked(stats_.max_live_bytes);
}

void HostAllocator::trim_locked(size_t limit) {
  // The largest blocks first: the fewest frees to get under the cap.
  while (stats_.cached_bytes > limit && !cache_.empty()) {
    auto it = std::prev(cache_.end());
    stats_.cached_bytes -= it->first;
    std::free(it->second);
    cache_.erase(it);
  }
}

void HostAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  trim_locked(0);
}

HostAllocatorStats HostAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace vitscuda
