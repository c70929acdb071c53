// The host caching allocator: size classes, reuse of freed blocks, the cache's cap, and that tensors
// built on reused memory still start as asked (zeros are zeros).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "engine/host_allocator.h"
#include "engine/tensor.h"

namespace vitscuda {
namespace {

TEST(HostAllocator, SizeClassesStayWithinAnEighthAndAreMonotonic) {
  size_t previous = 0;
  for (size_t bytes = 1; bytes < (size_t(64) << 20); bytes = bytes * 5 / 4 + 7) {
    const size_t size = HostAllocator::round_size(bytes);
    EXPECT_GE(size, bytes);
    EXPECT_EQ(size % 64, 0u) << bytes;
    if (bytes >= HostAllocator::kMinCachedBytes) EXPECT_LE(size, bytes + bytes / 8 + 64) << bytes;
    EXPECT_GE(size, previous) << bytes;
    // A class is closed: its own size rounds to itself, so release() finds the block's class again.
    EXPECT_EQ(HostAllocator::round_size(size), size) << bytes;
    previous = size;
  }
}

TEST(HostAllocator, ReusesAFreedBlockOfTheSameClass) {
  HostAllocator& a = HostAllocator::instance();
  const size_t bytes = size_t(3) << 20;
  void* first = a.allocate(bytes);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
  a.release(first, bytes);
  const HostAllocatorStats before = a.stats();
  EXPECT_GE(before.cached_bytes, HostAllocator::round_size(bytes));
  // A slightly different request of the same class gets the same block back, without the C heap.
  void* second = a.allocate(bytes - 100);
  const HostAllocatorStats after = a.stats();
  EXPECT_EQ(second, first);
  EXPECT_EQ(after.cache_hits, before.cache_hits + 1);
  EXPECT_EQ(after.system_allocations, before.system_allocations);
  a.release(second, bytes - 100);
  a.empty_cache();
  EXPECT_EQ(a.stats().cached_bytes, 0u);
}

TEST(HostAllocator, CacheNeverHoldsMoreThanThePeakLiveTotal) {
  HostAllocator& a = HostAllocator::instance();
  a.empty_cache();
  std::vector<std::pair<void*, size_t>> blocks;
  for (int i = 0; i < 12; ++i) {
    const size_t bytes = (size_t(1) << 20) * static_cast<size_t>(i + 1);
    blocks.emplace_back(a.allocate(bytes), bytes);
    ASSERT_NE(blocks.back().first, nullptr);
  }
  for (auto& [ptr, bytes] : blocks) a.release(ptr, bytes);
  const HostAllocatorStats s = a.stats();
  EXPECT_GT(s.cached_bytes, 0u);
  EXPECT_LE(s.cached_bytes, s.max_live_bytes);
  a.empty_cache();
}

TEST(HostAllocator, SmallBlocksBypassTheCache) {
  HostAllocator& a = HostAllocator::instance();
  a.empty_cache();
  const HostAllocatorStats before = a.stats();
  void* p = a.allocate(1000);
  ASSERT_NE(p, nullptr);
  a.release(p, 1000);
  const HostAllocatorStats after = a.stats();
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_EQ(after.system_allocations, before.system_allocations);
}

TEST(HostAllocator, TensorsOnReusedMemoryKeepTheirValuesAndTheLiveCount) {
  const Shape shape{512, 1024};  // 2 MiB: cached
  const MemoryStats start = cpu_memory_stats();
  {
    Tensor dirty = Tensor::full(shape, 7.0);
  }
  EXPECT_EQ(cpu_memory_stats().live_bytes, start.live_bytes);  // the cache is not live tensor memory
  const Tensor zeros = Tensor::zeros(shape);  // very likely the block `dirty` left behind
  const std::vector<float> v = zeros.to_float_vector();
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], 0.0f) << i;
  EXPECT_EQ(cpu_memory_stats().live_bytes, start.live_bytes + 512 * 1024 * 4);
}

}  // namespace
}  // namespace vitscuda
