// Warp and block reductions in float, in a fixed order (so repeated runs give the same bits).
// Only .cu files include this; everything here is device code local to each including file.
#pragma once
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;  // every lane holds the total
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Block-wide reductions (blockDim.x a multiple of 32; `partials` holds blockDim.x / 32 floats in
// shared memory). Every thread adds the warp partials in the same order, so all of them return the
// same value; the closing barrier lets the next reduction reuse `partials`. Every thread of the
// block must call them.
__device__ __forceinline__ float block_sum(float v, float* partials) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) partials[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < warps; ++w) total += partials[w];
  __syncthreads();
  return total;
}
__device__ __forceinline__ float block_max(float v, float* partials) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_max(v);
  if (lane == 0) partials[warp] = v;
  __syncthreads();
  float total = -INFINITY;
  for (int w = 0; w < warps; ++w) total = fmaxf(total, partials[w]);
  __syncthreads();
  return total;
}

}  // namespace
}  // namespace vitscuda::kernels::cuda
