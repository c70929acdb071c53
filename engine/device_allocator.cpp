#include "engine/device_allocator.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "kernels/device.h"

namespace vitscuda {

namespace {
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeThreshold = 1 << 20;
constexpr size_t kLargeRound = 2 << 20;

void* scratch_alloc(size_t bytes, const char* what) { return DeviceAllocator::instance().allocate(bytes, what); }
void scratch_free(void* ptr) { DeviceAllocator::instance().release(ptr); }
}  // namespace

DeviceAllocator& DeviceAllocator::instance() {
  static DeviceAllocator* allocator = new DeviceAllocator();  // never destroyed: tensors may outlive statics
  return *allocator;
}

DeviceAllocator::DeviceAllocator() { kernels::set_scratch_allocator(&scratch_alloc, &scratch_free); }

size_t DeviceAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t unit = bytes < kLargeThreshold ? kSmallRound : kLargeRound;
  return (bytes + unit - 1) / unit * unit;
}

std::string format_bytes(size_t bytes) {
  char buf[64];
  if (bytes >= (size_t(1) << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(size_t(1) << 30));
  else if (bytes >= (size_t(1) << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / double(size_t(1) << 20));
  else
    std::snprintf(buf, sizeof buf, "%zu bytes", bytes);
  return buf;
}

void* DeviceAllocator::allocate(size_t bytes, const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t size = round_size(bytes);
  // Best fit from the cache, but never a block more than twice the request (it would waste
  // the rest for the block's whole life).
  auto it = cache_.lower_bound(size);
  if (it != cache_.end() && it->first <= 2 * size) {
    void* p = it->second;
    const size_t block = it->first;
    cache_.erase(it);
    live_[p] = block;
    stats_.live_bytes += block;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    ++stats_.allocations;
    return p;
  }
  const bool over_budget = stats_.budget_bytes && stats_.reserved_bytes + size > stats_.budget_bytes;
  if (over_budget) release_cache_locked();
  void* p = nullptr;
  if (!stats_.budget_bytes || stats_.reserved_bytes + size <= stats_.budget_bytes) {
    p = kernels::device_malloc_raw(size);
    if (!p) {
      release_cache_locked();
      p = kernels::device_malloc_raw(size);
    }
  }
  if (!p) {
    size_t free_b = 0, total_b = 0;
    kernels::device_memory_info(&free_b, &total_b);
    std::ostringstream os;
    os << "CUDA out of memory: " << what << " needs " << format_bytes(bytes) << "; live " << format_bytes(stats_.live_bytes)
       << ", peak " << format_bytes(stats_.peak_live_bytes) << ", budget "
       << (stats_.budget_bytes ? format_bytes(stats_.budget_bytes) : std::string("none")) << ", device free "
       << format_bytes(free_b) << " of " << format_bytes(total_b) << "; outside the budget, the CUDA libraries'"
       << " own memory (measured when their handles and plans were made): "
       << format_bytes(kernels::library_memory_bytes()) << ".";
    if (!oom_hint_.empty()) os << " " << oom_hint_;
    throw Error(os.str());
  }
  live_[p] = size;
  stats_.live_bytes += size;
  stats_.reserved_bytes += size;
  stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  ++stats_.cuda_mallocs;
  ++stats_.allocations;
  return p;
}

void DeviceAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    // A pointer we never handed out: freeing it would corrupt the cache. Report, never throw
    // from a destructor path.
    std::fprintf(stderr, "vitscuda: internal error: release of unknown device pointer %p\n", ptr);
    std::abort();
  }
  cache_.emplace(it->second, ptr);
  stats_.live_bytes -= it->second;
  live_.erase(it);
}

void DeviceAllocator::release_cache_locked() {
  if (cache_.empty()) return;
  kernels::device_synchronize();  // nothing in flight may still use a block we return
  for (auto& [size, p] : cache_) {
    kernels::device_free_raw(p);
    stats_.reserved_bytes -= size;
  }
  cache_.clear();
}

void DeviceAllocator::set_budget(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.budget_bytes = bytes;
}

size_t DeviceAllocator::budget() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_.budget_bytes;
}

void DeviceAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cache_locked();
}

DeviceMemoryStats DeviceAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void DeviceAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_live_bytes = stats_.live_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

void DeviceAllocator::set_oom_hint(std::string hint) {
  std::lock_guard<std::mutex> lock(mutex_);
  oom_hint_ = std::move(hint);
}

size_t parse_memory_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  VC_CHECK(i > 0, "memory size '" << text << "': expected a number with an optional unit (K, M, G), e.g. 7.5G");
  double value = 0;
  try {
    value = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    VC_FAIL("memory size '" << text << "': '" << text.substr(0, i) << "' is not a number");
  }
  std::string unit = text.substr(i);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "KB" || unit == "KIB")
    mult = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MIB")
    mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GIB")
    mult = 1024.0 * 1024 * 1024;
  else
    VC_FAIL("memory size '" << text << "': unknown unit '" << text.substr(i) << "' (use K, M or G)");
  const double bytes = value * mult;
  VC_CHECK(std::isfinite(bytes) && bytes >= 1 && bytes < 1e18, "memory size '" << text << "' is out of range");
  return static_cast<size_t>(bytes);
}

}  // namespace vitscuda
