// Shared by every CUDA source: error-checking macros, the compute stream, library handles,
// scratch memory and launch helpers. Only .cu files include this.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cufft.h>

#include <cstddef>
#include <cstdint>

#include "common/error.h"

namespace vitscuda::kernels::cuda {

[[noreturn]] void fail_cuda(const char* call, cudaError_t err, const char* file, int line);
[[noreturn]] void fail_cublas(const char* call, cublasStatus_t status, const char* file, int line);
[[noreturn]] void fail_cudnn(const char* call, cudnnStatus_t status, const char* file, int line);
[[noreturn]] void fail_cufft(const char* call, cufftResult result, const char* file, int line);
// After a launch: the launch error (bad configuration, no kernel image for this device), and
// with VITSCUDA_SYNC_LAUNCHES=1 also the kernel's own asynchronous error, attributed to it.
void check_launch(const char* kernel, const char* file, int line);

// The one compute stream (non-blocking), created on first use.
cudaStream_t compute_stream();
cublasHandle_t cublas_handle();  // bound to the compute stream, default (non-TF32) math
cudnnHandle_t cudnn_handle();    // bound to the compute stream

// Library memory bookkeeping (kernels/device.h: library_memory_bytes, library_workspace_bytes):
// device memory a library took for itself, outside our allocator, and workspaces we handed a
// library from our allocator (counted by the budget).
void add_library_memory(size_t bytes);
void add_library_workspace(size_t bytes);

// Waits for all work on the compute stream. Every wait of ours goes through here, so that
// kernels/device.h's stream_waits() counts them all.
void wait_for_stream();

void* scratch_alloc(size_t bytes, const char* what);
void scratch_free(void* ptr);

// Scratch memory for the duration of one kernel call (freed on scope exit; single-stream
// ordering makes reuse by later work safe).
class Scratch {
 public:
  Scratch() = default;
  Scratch(size_t bytes, const char* what) : ptr_(bytes ? scratch_alloc(bytes, what) : nullptr), bytes_(bytes) {}
  ~Scratch() {
    if (ptr_) scratch_free(ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch(Scratch&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  Scratch& operator=(Scratch&& o) noexcept {
    if (this != &o) {
      if (ptr_) scratch_free(ptr_);
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Copies a host array into scratch memory (index arrays passed as std::vector by the ops).
Scratch upload(const void* host, size_t bytes, const char* what);

inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  // Grid-stride loops cover the rest; 2^20 blocks keep every device busy.
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 20) ? (1 << 20) : b));
}

}  // namespace vitscuda::kernels::cuda

#define CUDA_CHECK(call)                                                                    \
  do {                                                                                      \
    cudaError_t vc_err_ = (call);                                                           \
    if (vc_err_ != cudaSuccess) ::vitscuda::kernels::cuda::fail_cuda(#call, vc_err_, __FILE__, __LINE__); \
  } while (0)
#define CUBLAS_CHECK(call)                                                                  \
  do {                                                                                      \
    cublasStatus_t vc_st_ = (call);                                                         \
    if (vc_st_ != CUBLAS_STATUS_SUCCESS) ::vitscuda::kernels::cuda::fail_cublas(#call, vc_st_, __FILE__, __LINE__); \
  } while (0)
#define CUDNN_CHECK(call)                                                                   \
  do {                                                                                      \
    cudnnStatus_t vc_st_ = (call);                                                          \
    if (vc_st_ != CUDNN_STATUS_SUCCESS) ::vitscuda::kernels::cuda::fail_cudnn(#call, vc_st_, __FILE__, __LINE__); \
  } while (0)
#define CUFFT_CHECK(call)                                                                   \
  do {                                                                                      \
    cufftResult vc_r_ = (call);                                                             \
    if (vc_r_ != CUFFT_SUCCESS) ::vitscuda::kernels::cuda::fail_cufft(#call, vc_r_, __FILE__, __LINE__); \
  } while (0)
// Launch on the compute stream and check: VC_LAUNCH(kernel, grid, block, shared)(args...);
#define VC_LAUNCH(kernel, grid, block, shmem) \
  kernel<<<(grid), (block), (shmem), ::vitscuda::kernels::cuda::compute_stream()>>>
#define VC_CHECK_LAUNCH(name) ::vitscuda::kernels::cuda::check_launch(name, __FILE__, __LINE__)

namespace vitscuda::kernels::cuda {

// Runs create() (a library handle or plan being made) and counts the device memory it took (the drop
// in cudaMemGetInfo's free bytes) as the libraries' own.
template <typename Create>
void measure_library_memory(Create create) {
  size_t free_before = 0, free_after = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  create();
  CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  if (free_after < free_before) add_library_memory(free_before - free_after);
}

}  // namespace vitscuda::kernels::cuda
