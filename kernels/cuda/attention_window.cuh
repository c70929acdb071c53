// What the relative-attention forward and backward kernels share: the window of keys around a
// query and the per-row dot products with the relative embeddings. Only .cu files include this.
#pragma once
#include <cstdint>

#include "kernels/cuda/reduce.cuh"

namespace vitscuda::kernels::cuda {
namespace {

constexpr int kMaxRowThreads = 256;  // threads of a block that handles one attention row

// The keys j in [first, last] with |j - i| <= window.
__device__ __forceinline__ void window_range(int64_t i, int64_t time, int window, int64_t& first, int64_t& last) {
  first = i - window < 0 ? 0 : i - window;
  last = i + window > time - 1 ? time - 1 : i + window;
}

// row[j] += vec . emb[j - i + window] for the keys j in [first, last]: warps take the keys in turn,
// lanes split the dim products, lane 0 adds the dot. A barrier after it publishes the writes to
// the block.
__device__ __forceinline__ void add_relative_dots(const float* vec, const float* emb, float* row, int64_t i,
                                                  int64_t first, int64_t last, int dim, int window) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  for (int64_t j = first + warp; j <= last; j += warps) {
    const float* e = emb + (j - i + window) * dim;
    float dot = 0.f;
    for (int d = lane; d < dim; d += kWarp) dot += vec[d] * e[d];
    dot = warp_sum(dot);
    if (lane == 0) row[j] += dot;
  }
}

}  // namespace
}  // namespace vitscuda::kernels::cuda
