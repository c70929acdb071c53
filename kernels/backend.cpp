#include "kernels/backend.h"

#if VITSCUDA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace vitscuda::kernels {

bool built_with_cuda() { return VITSCUDA_HAVE_CUDA != 0; }

bool cuda_device_available(std::string* why) {
#if VITSCUDA_HAVE_CUDA
  int count = 0;  // cudaGetDeviceCount leaves it unwritten on error
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = std::string("CUDA runtime: ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device";
    return false;
  }
  return true;
#else
  if (why) *why = "built without CUDA (nvcc was not found at configure time)";
  return false;
#endif
}

}  // namespace vitscuda::kernels

#if !VITSCUDA_HAVE_CUDA
// Without CUDA no tensor can live on the device; these say so if anything asks.
#include "common/error.h"
#include "kernels/device.h"

namespace vitscuda::kernels {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  VC_FAIL(what << ": this vitscuda was built without CUDA (nvcc was not found at configure time)");
}
}  // namespace
void* device_malloc_raw(size_t) { no_cuda("device memory"); }
void device_free_raw(void* ptr) {
  if (ptr) no_cuda("device memory");
}
void copy_host_to_device(void*, const void*, size_t) { no_cuda("copy to the device"); }
void copy_device_to_host(void*, const void*, size_t) { no_cuda("copy from the device"); }
void copy_device_to_device(void*, const void*, size_t) { no_cuda("device copy"); }
void device_memset_zero(void*, size_t) { no_cuda("device memset"); }
void device_synchronize() { no_cuda("device synchronisation"); }
uint64_t stream_waits() { return 0; }  // there is no stream to wait for
size_t library_memory_bytes() { return 0; }
size_t library_workspace_bytes() { return 0; }
void set_scratch_allocator(ScratchAlloc, ScratchFree) {}
DeviceInfo device_info() { no_cuda("device properties"); }
void device_memory_info(size_t*, size_t*) { no_cuda("device memory info"); }
}  // namespace vitscuda::kernels
#endif
