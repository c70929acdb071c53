// The caching allocator for host tensor memory. glibc serves large blocks with mmap and unmaps them
// at free, so without a cache every tensor of a training step (the same shapes step after step) is
// mapped and faulted in afresh: the kernel's page-fault work was a quarter of the step's user time.
// Freed blocks are kept by size class and handed out again to a request of the same class; a size
// is rounded up to a multiple of 1/8 of its power of two (at most 12.5% over the request) so that
// nearby sizes share blocks. The cache holds at most the highest live total seen so far (so the
// process never holds more than twice its peak of live tensors), the largest blocks leaving first,
// and is released and the request retried once when the system is out of memory.
// Blocks below kMinCachedBytes come from the C heap directly: glibc reuses those itself.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace vitscuda {

struct HostAllocatorStats {
  // Blocks of kMinCachedBytes and more only (the smaller ones go straight to the C heap), rounded sizes.
  size_t live_bytes = 0;      // handed out and not yet released
  size_t cached_bytes = 0;    // released and kept for reuse
  size_t max_live_bytes = 0;  // highest live_bytes so far (the cache's cap; never reset)
  uint64_t system_allocations = 0;  // cache misses that went to the C heap
  uint64_t cache_hits = 0;
};

class HostAllocator {
 public:
  static constexpr size_t kMinCachedBytes = size_t(256) << 10;

  static HostAllocator& instance();

  // 64-byte aligned memory of at least `bytes`; nullptr when the system is out of memory even after
  // the cache was released. `bytes` must be passed again to release().
  void* allocate(size_t bytes);
  void release(void* ptr, size_t bytes);
  // Returns every cached block to the C heap.
  void empty_cache();
  HostAllocatorStats stats() const;

  // The size a request of `bytes` is served with (exposed for the tests).
  static size_t round_size(size_t bytes);

 private:
  HostAllocator() = default;
  void trim_locked(size_t limit);

  mutable std::mutex mutex_;
  std::multimap<size_t, void*> cache_;  // free blocks by rounded size
  HostAllocatorStats stats_;
};

}  // namespace vitscuda
