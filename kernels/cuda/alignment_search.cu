// Monotonic alignment search on the device: one block per batch item. The frames are a chain (row y
// reads row y-1), so the block walks them in order; within a row the tokens of the band are independent
// and spread over the threads. Thread 0 then backtracks. The additions and comparisons are the CPU
// kernel's (kernels/cpu/alignment_search.cpp), one float add per cell with no contraction possible, so
// the map is identical to the CPU's.
#include <vector>

#include "kernels/alignment.h"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

constexpr int kThreads = 128;

// Q [B, F, T]: the working copy (scratch); only the band of each item's [Ty, Tx] corner is written and read.
__global__ void alignment_search_kernel(const float* __restrict__ value, float* __restrict__ Q,
                                        const int64_t* __restrict__ frame_lengths,
                                        const int64_t* __restrict__ token_lengths, int32_t* __restrict__ map,
                                        int64_t F, int64_t T) {
  const int64_t b = blockIdx.x;
  const int64_t Ty = frame_lengths[b], Tx = token_lengths[b];
  const float* v = value + b * F * T;
  float* q = Q + b * F * T;
  const float max_neg_val = -1e9f;
  for (int64_t y = 0; y < Ty; ++y) {
    const int64_t lo = Tx + y - Ty > 0 ? Tx + y - Ty : 0;
    const int64_t hi = Tx < y + 1 ? Tx : y + 1;
    const float* prev = q + (y > 0 ? y - 1 : 0) * T;  // row y - 1 (read only when y > 0)
    for (int64_t x = lo + threadIdx.x; x < hi; x += blockDim.x) {
      const float v_cur = x == y ? max_neg_val : prev[x];
      const float v_prev = x == 0 ? (y == 0 ? 0.0f : max_neg_val) : prev[x - 1];
      q[y * T + x] = __fadd_rn(v[y * T + x], v_cur > v_prev ? v_cur : v_prev);
    }
    __syncthreads();  // row y complete before row y + 1 reads it
  }
  int32_t* m = map + b * F;
  for (int64_t y = Ty + threadIdx.x; y < F; y += blockDim.x) m[y] = -1;
  if (threadIdx.x != 0) return;
  int64_t index = Tx - 1;
  for (int64_t y = Ty - 1; y >= 0; --y) {
    m[y] = static_cast<int32_t>(index);
    if (index != 0 && y != 0 && (index == y || q[(y - 1) * T + index] < q[(y - 1) * T + index - 1])) --index;
  }
}

}  // namespace

void monotonic_alignment_search_cuda(const float* log_likelihood, const int64_t* frame_lengths,
                                     const int64_t* token_lengths, int32_t* map, int64_t B, int64_t F,
                                     int64_t T_tokens) {
  if (B <= 0) return;
  check_alignment_lengths("monotonic_alignment_search", frame_lengths, token_lengths, B, F, T_tokens);
  VC_CHECK(B <= 2147483647, "monotonic_alignment_search: batch " << B << " exceeds the grid");
  cuda::Scratch dev_frames = cuda::upload(frame_lengths, sizeof(int64_t) * size_t(B), "alignment frame lengths");
  cuda::Scratch dev_tokens = cuda::upload(token_lengths, sizeof(int64_t) * size_t(B), "alignment token lengths");
  cuda::Scratch Q(sizeof(float) * size_t(B * F * T_tokens), "alignment search values");
  cuda::Scratch dev_map(sizeof(int32_t) * size_t(B * F), "alignment map");
  VC_LAUNCH(alignment_search_kernel, static_cast<unsigned>(B), kThreads, 0)(
      log_likelihood, Q.as<float>(), dev_frames.as<int64_t>(), dev_tokens.as<int64_t>(), dev_map.as<int32_t>(), F,
      T_tokens);
  VC_CHECK_LAUNCH("monotonic_alignment_search");
  CUDA_CHECK(cudaMemcpyAsync(map, dev_map.get(), sizeof(int32_t) * size_t(B * F), cudaMemcpyDeviceToHost,
                             cuda::compute_stream()));
  cuda::wait_for_stream();
}

}  // namespace vitscuda::kernels
