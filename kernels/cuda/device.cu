// The compute stream, library handles, error reporting, raw memory and device properties.
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

cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, compute_stream()));
    // Full fp32 products: parity with the CPU reference is part of the contract.
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    return h;
  }();
  return handle;
}

cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    CUDNN_CHECK(cudnnCreate(&h));
    CUDNN_CHECK(cudnnSetStream(h, compute_stream()));
    return h;
  }();
  return handle;
}

void* scratch_alloc(size_t bytes, const char* what) {
  VC_CHECK(g_scratch_alloc, "CUDA scratch allocator not installed (the engine's device allocator sets it)");
  return g_scratch_alloc(bytes, what);
}

void scratch_free(void* ptr) {
  if (ptr && g_scratch_free) g_scratch_free(ptr);
}

Scratch upload(const void* host, size_t bytes, const char* what) {
  Scratch s(bytes, what);
  if (bytes) CUDA_CHECK(cudaMemcpyAsync(s.get(), host, bytes, cudaMemcpyHostToDevice, compute_stream()));
  // The host array may die right after the call returns: the copy must be done first.
  if (bytes) CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
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
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, compute_stream()));
  // Pageable host memory: the source may be reused as soon as this returns.
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_stream()));
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, compute_stream()));
}

void device_memset_zero(void* dst, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, compute_stream()));
}

void device_synchronize() { CUDA_CHECK(cudaStreamSynchronize(compute_stream())); }

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
