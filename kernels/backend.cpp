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
