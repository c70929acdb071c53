// The caching allocator for CUDA memory. Every device byte (tensors and kernels' scratch)
// comes from here, so it knows the live total and the high-water mark, and it enforces an
// optional budget (`--memory-budget 7.5G` makes a large card behave like an 8 GB one).
//
// Freed blocks are kept in a cache keyed by size and reused best-fit; blocks are rounded to
// 512 bytes (small) or 2 MiB (large) to limit fragmentation. When cudaMalloc fails or the
// budget would be exceeded, the cache is released and the request retried once; then it is
// an error that prints the request, the live and peak bytes, the budget and what to lower.
// All device work runs on one stream, so a block freed by the host can be handed out again
// at once: later work on that stream runs after the work that used it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace vitscuda {

struct DeviceMemoryStats {
  size_t live_bytes = 0;      // handed out and not yet freed (rounded sizes)
  size_t peak_live_bytes = 0; // high-water mark of live_bytes since the last reset
  size_t reserved_bytes = 0;  // obtained from cudaMalloc (live + cached)
  size_t peak_reserved_bytes = 0;
  size_t budget_bytes = 0;    // 0: no budget
  uint64_t cuda_mallocs = 0;  // calls to cudaMalloc (cache misses)
  uint64_t allocations = 0;   // requests served
};

class DeviceAllocator {
 public:
  static DeviceAllocator& instance();

  // `what` names the request in an out-of-memory error ("tensor f32[4, 192, 2000]").
  void* allocate(size_t bytes, const char* what);
  void release(void* ptr);

  // Reserved bytes (live + cached) may not exceed the budget; 0 removes it.
  void set_budget(size_t bytes);
  size_t budget() const;
  // Returns every cached block to the driver.
  void empty_cache();
  DeviceMemoryStats stats() const;
  void reset_peak();
  // A hint appended to out-of-memory errors (the CLI names the flags that lower memory).
  void set_oom_hint(std::string hint);

 private:
  DeviceAllocator();
  void release_cache_locked();
  static size_t round_size(size_t bytes);

  mutable std::mutex mutex_;
  std::multimap<size_t, void*> cache_;          // free blocks by size
  std::unordered_map<void*, size_t> live_;      // handed-out blocks and their rounded sizes
  DeviceMemoryStats stats_;
  std::string oom_hint_;
};

// Parses "7.5G", "512M", "8GB", "1024" (bytes); throws with the text on anything else.
size_t parse_memory_size(const std::string& text);
std::string format_bytes(size_t bytes);

}  // namespace vitscuda
