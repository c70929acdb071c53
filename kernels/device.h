// The CUDA device as the engine sees it: raw memory, copies, synchronisation and the
// device's properties, behind plain C++ types so host code needs no CUDA headers.
// Every function throws vitscuda::Error naming the CUDA call, file and line on failure;
// in a build without CUDA each one throws "built without CUDA".
//
// All device work runs on one compute stream (kernels/cuda/common.cuh: compute_stream()),
// so work is ordered and memory freed by the host can be reused at once by later work.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace vitscuda::kernels {

// cudaMalloc; returns nullptr (never throws) when the device is out of memory, so the
// caching allocator can release its cache and retry.
void* device_malloc_raw(size_t bytes);
void device_free_raw(void* ptr);

// Copies are ordered on the compute stream; those that read into host memory wait for it.
// Host-to-device copies up to 8 MiB return at once (the bytes are staged in pinned memory, so
// src may be reused immediately); larger ones wait for the stream.
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void device_memset_zero(void* dst, size_t bytes);
// Waits for all work on the compute stream and reports any asynchronous kernel error.
void device_synchronize();
// How many times the host has waited for the whole compute stream so far (device_synchronize,
// copies to the host, large copies from it): tests and benchmarks count them per step.
uint64_t stream_waits();
// Device memory the CUDA libraries took for themselves, outside the allocator and its budget,
// measured (the drop in free device memory) when their handles and plans were created; kernel
// modules that the libraries load later are not included. 0 before any library was used.
size_t library_memory_bytes();
// Long-lived workspaces handed to the libraries from the allocator (cuBLAS's): counted by the budget,
// reported here so that a user can see what they cost. cuDNN's and cuFFT's come from the allocator per
// call, as scratch.
size_t library_workspace_bytes();

// Scratch memory for kernels (cuDNN workspaces, im2col buffers, uploaded index arrays). The
// engine installs its caching allocator here, so scratch counts against the memory budget.
using ScratchAlloc = void* (*)(size_t bytes, const char* what);
using ScratchFree = void (*)(void* ptr);
void set_scratch_allocator(ScratchAlloc alloc, ScratchFree release);

struct DeviceInfo {
  std::string name;
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0;
  size_t free_memory = 0;         // cudaMemGetInfo at the time of the query
  double sm_clock_ghz = 0;        // peak SM clock
  double memory_clock_ghz = 0;    // peak memory clock
  int memory_bus_bits = 0;
  double peak_fp32_tflops = 0;    // SMs x clock x FP32 lanes per SM x 2 (FMA)
  double peak_bandwidth_gbs = 0;  // memory clock x 2 (DDR) x bus width / 8
  size_t l2_bytes = 0;
};
// Properties of the current device, read from the runtime.
DeviceInfo device_info();
// cudaMemGetInfo: free and total bytes on the device.
void device_memory_info(size_t* free_bytes, size_t* total_bytes);

}  // namespace vitscuda::kernels
