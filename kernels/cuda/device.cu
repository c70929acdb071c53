// The compute stream, library handles, error reporting, raw memory and device properties.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>

#include "kernels/cuda/common.cuh"
#include "kernels/device.h"

namespace vitscuda::kernels {

namespace cuda {

namespace {

const char* cufft_result_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "unknown cufftResult";
  }
}

bool sync_launches() {
  static const bool on = [] {
    const char* v = std::getenv("VITSCUDA_SYNC_LAUNCHES");
    return v && std::strcmp(v, "0") != 0 && *v;
  }();
  return on;
}

ScratchAlloc g_scratch_alloc = nullptr;
ScratchFree g_scratch_free = nullptr;

}  // namespace

void fail_cuda(const char* call, cudaError_t err, const char* file, int line) {
  (void)cudaGetLastError();  // clear a sticky-free error so later calls report their own
  VC_FAIL("CUDA error " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err) << ") in " << call << " at "
                        << file << ":" << line);
}

void fail_cublas(const char* call, cublasStatus_t status, const char* file, int line) {
  VC_FAIL("cuBLAS error " << cublasGetStatusName(status) << " (" << cublasGetStatusString(status) << ") in " << call
                          << " at " << file << ":" << line);
}

void fail_cudnn(const char* call, cudnnStatus_t status, const char* file, int line) {
  VC_FAIL("cuDNN error " << cudnnGetErrorString(status) << " (" << static_cast<int>(status) << ") in " << call
                         << " at " << file << ":" << line);
}

void fail_cufft(const char* call, cufftResult result, const char* file, int line) {
  VC_FAIL("cuFFT error " << cufft_result_name(result) << " (" << static_cast<int>(result) << ") in " << call << " at "
                         << file << ":" << line);
}

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_launches()) err = cudaStreamSynchronize(compute_stream());
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    VC_FAIL("CUDA kernel " << kernel << " failed: " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err)
                           << ") at " << file << ":" << line);
  }
}

cudaStream_t compute_stream() {
  static cudaStream_t stream = [] {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }();
  return stream;
}

namespace {

std::atomic<size_t> g_library_memory{0};
std::atomic<size_t> g_library_workspaces{0};

}  // namespace

cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    // cuBLAS's workspace from our allocator, so the budget counts it (cuBLAS's own default sizes:
    // 32 MiB on Hopper and later, 4 MiB before). Taken first: if the budget refuses it, no handle
    // is left behind. It lives as long as the handle.
    int device = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    const size_t bytes = major >= 9 ? (size_t(32) << 20) : (size_t(4) << 20);
    void* workspace = scratch_alloc(bytes, "cuBLAS workspace");
    cublasHandle_t h = nullptr;
    measure_library_memory([&] { CUBLAS_CHECK(cublasCreate(&h)); });
    CUBLAS_CHECK(cublasSetStream(h, compute_stream()));
    // Full fp32 products: parity with the CPU reference is part of the contract.
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    CUBLAS_CHECK(cublasSetWorkspace(h, workspace, bytes));
    add_library_workspace(bytes);
    return h;
  }();
  return handle;
}

cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    measure_library_memory([&] { CUDNN_CHECK(cudnnCreate(&h)); });
    CUDNN_CHECK(cudnnSetStream(h, compute_stream()));
    return h;
  }();
  return handle;
}

void add_library_memory(size_t bytes) { g_library_memory += bytes; }
void add_library_workspace(size_t bytes) { g_library_workspaces += bytes; }

void* scratch_alloc(size_t bytes, const char* what) {
  VC_CHECK(g_scratch_alloc, "CUDA scratch allocator not installed (the engine's device allocator sets it)");
  return g_scratch_alloc(bytes, what);
}

void scratch_free(void* ptr) {
  if (ptr && g_scratch_free) g_scratch_free(ptr);
}

namespace {

std::atomic<uint64_t> g_stream_waits{0};

// Host-to-device copies go through pinned staging buffers: the caller's bytes are copied into one
// on the host, and the device copy from it is truly asynchronous, so the caller's array may die at
// once and the stream is not drained. Each buffer's last copy is marked by an event; a buffer is
// reused only after that event, i.e. after the copy made kSlots uploads ago, which is long done in
// a training step. Buffers grow to the largest upload they carry (powers of two, kMaxStagedBytes at
// most, so at most kSlots * kMaxStagedBytes = 128 MiB of pinned memory) and live for the process.
class StagingRing {
 public:
  static constexpr int kSlots = 16;

  // False when no pinned buffer could be had (the caller then copies from pageable memory and waits).
  bool copy(void* device_dst, const void* host_src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    Slot& slot = slots_[next_];
    if (slot.in_flight) {
      CUDA_CHECK(cudaEventSynchronize(slot.done));  // the copy of kSlots uploads ago, not the whole stream
      slot.in_flight = false;
    }
    if (slot.bytes < bytes) {
      if (slot.host) {
        g_stream_waits.fetch_add(1, std::memory_order_relaxed);  // cudaFreeHost waits for the device
        CUDA_CHECK(cudaFreeHost(slot.host));
      }
      slot.host = nullptr;
      slot.bytes = 0;
      size_t size = kMinSlotBytes;
      while (size < bytes) size *= 2;
      if (cudaMallocHost(&slot.host, size) != cudaSuccess) {
        (void)cudaGetLastError();
        slot.host = nullptr;
        return false;
      }
      slot.bytes = size;
    }
    if (!slot.done) CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
    std::memcpy(slot.host, host_src, bytes);
    CUDA_CHECK(cudaMemcpyAsync(device_dst, slot.host, bytes, cudaMemcpyHostToDevice, compute_stream()));
    CUDA_CHECK(cudaEventRecord(slot.done, compute_stream()));
    slot.in_flight = true;
    next_ = (next_ + 1) % kSlots;
    return true;
  }

 private:
  static constexpr size_t kMinSlotBytes = size_t(64) << 10;
  struct Slot {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
    bool in_flight = false;
  };
  std::mutex mutex_;
  Slot slots_[kSlots];
  int next_ = 0;
};

StagingRing& staging_ring() {
  static StagingRing* ring = new StagingRing();  // never destroyed: pinned memory outlives static teardown
  return *ring;
}

// Larger host-to-device copies (weights, whole datasets) are rare: they go straight from pageable
// memory and wait, instead of pinning that much host memory for good. A training step's uploads (ids,
// a batch of waveforms, index arrays) are far below this.
constexpr size_t kMaxStagedBytes = size_t(8) << 20;

}  // namespace

void wait_for_stream() {
  g_stream_waits.fetch_add(1, std::memory_order_relaxed);
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}

Scratch upload(const void* host, size_t bytes, const char* what) {
  Scratch s(bytes, what);
  copy_host_to_device(s.get(), host, bytes);
  return s;
}

}  // namespace cuda

using cuda::compute_stream;

void* device_malloc_raw(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return nullptr;
  }
  if (err != cudaSuccess) cuda::fail_cuda("cudaMalloc", err, __FILE__, __LINE__);
  return p;
}

void device_free_raw(void* ptr) {
  if (ptr) CUDA_CHECK(cudaFree(ptr));
}

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  if (bytes <= cuda::kMaxStagedBytes && cuda::staging_ring().copy(dst, src, bytes)) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, compute_stream()));
  // Pageable host memory: the source may be reused as soon as this returns.
  cuda::wait_for_stream();
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_stream()));
  cuda::wait_for_stream();
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, compute_stream()));
}

void device_memset_zero(void* dst, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, compute_stream()));
}

void device_synchronize() { cuda::wait_for_stream(); }

uint64_t stream_waits() { return cuda::g_stream_waits.load(std::memory_order_relaxed); }

size_t library_memory_bytes() { return cuda::g_library_memory.load(); }
size_t library_workspace_bytes() { return cuda::g_library_workspaces.load(); }

void set_scratch_allocator(ScratchAlloc alloc, ScratchFree release) {
  cuda::g_scratch_alloc = alloc;
  cuda::g_scratch_free = release;
}

namespace {
// FP32 lanes per SM by architecture (CUDA C Programming Guide, arithmetic instruction throughput).
int fp32_lanes_per_sm(int major, int minor) {
  if (major == 7) return 64;                       // Volta, Turing
  if (major == 8) return minor == 0 ? 64 : 128;    // A100: 64; GA10x, Ada: 128
  if (major >= 9) return 128;                      // Hopper, Blackwell
  return 128;
}
}  // namespace

DeviceInfo device_info() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  int sm_clock_khz = 0, mem_clock_khz = 0, bus_bits = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
  DeviceInfo info;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_memory = prop.totalGlobalMem;
  info.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  info.free_memory = free_b;
  info.sm_clock_ghz = sm_clock_khz * 1e-6;
  info.memory_clock_ghz = mem_clock_khz * 1e-6;
  info.memory_bus_bits = bus_bits;
  info.peak_fp32_tflops =
      info.multiprocessors * info.sm_clock_ghz * fp32_lanes_per_sm(prop.major, prop.minor) * 2.0 * 1e-3;
  info.peak_bandwidth_gbs = info.memory_clock_ghz * 2.0 * bus_bits / 8.0;
  return info;
}

void device_memory_info(size_t* free_bytes, size_t* total_bytes) {
  CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

}  // namespace vitscuda::kernels
