// Counter-based normal and uniform fills: element i reads its own Philox words, so the
// result equals the CPU's for the same seed and offset: uniform draws bit for bit
// (philox_scale_uniform), normal draws up to the last bit of the double transcendental functions.
#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace vitscuda::kernels {

namespace {

__global__ void fill_normal_kernel(float* y, int64_t n, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = static_cast<float>(philox_normal_at(seed, offset + 4 * static_cast<uint64_t>(i)));
}

__global__ void fill_uniform_kernel(float* y, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  const float top = static_cast<float>(hi);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = static_cast<float>(
        philox_scale_uniform(lo, hi, philox_uniform_at(seed, offset + 2 * static_cast<uint64_t>(i))));
    if (v >= top && lo < hi) v = nextafterf(top, static_cast<float>(lo));  // keep the range half-open
    y[i] = v;
  }
}

}  // namespace

void fill_normal_cuda(float* y, int64_t n, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  VC_LAUNCH(fill_normal_kernel, cuda::blocks_for(n, 256), 256, 0)(y, n, seed, offset);
  VC_CHECK_LAUNCH("fill_normal");
}

void fill_uniform_cuda(float* y, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  if (n <= 0) return;
  VC_LAUNCH(fill_uniform_kernel, cuda::blocks_for(n, 256), 256, 0)(y, n, seed, offset, lo, hi);
  VC_CHECK_LAUNCH("fill_uniform");
}

}  // namespace vitscuda::kernels
