// CUDA relative-position attention forward (VitsAttention between the projections), in the
// CPU kernel's order of operations:
//   1. probs = q k^T                       (cuBLAS strided-batched product, one per item-head)
//   2. + q_i . emb_k[j - i + W] in the window, + lowest for padding keys, softmax per row
//                                           (one fused kernel, one block per row)
//   3. out = probs v                       (cuBLAS strided-batched product)
//   4. out += sum_{|j-i|<=W} p_ij emb_v[j - i + W]
//
// cuBLAS is column-major: a row-major [rows, cols] matrix is the column-major [cols, rows]
// one, so row-major C = A B^T is computed as column-major C^T = B A^T.
#include <cfloat>
#include <climits>
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda/attention_window.cuh"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

using cuda::blocks_for;
using cuda::block_max;
using cuda::block_sum;
using cuda::kMaxRowThreads;
using cuda::kWarp;
using cuda::window_range;

// One block per row (bh, i) of probs, which holds the logits q_i . k_j on entry and the
// softmax on exit.
//   a. Relative keys: warps take the window's keys j in turn, lanes split the D products of
//      q_i . emb_k[j - i + W]; lane 0 adds the dot to the logit.
//   b. Each thread adds lowest = -FLT_MAX to its padding keys and tracks the row maximum. As on
//      the CPU, logit + lowest rounds to lowest for any ordinary logit, so a row whose keys are
//      all padding has equal entries and comes out uniform.
//   c. exp(l - max) and its sum; d. scale by 1 / sum (the CPU multiplies by the reciprocal too).
// Threads revisit the same columns j in b-d, so they read back only what they wrote; the
// barrier after a publishes lane 0's global writes to the block.
__global__ void relative_logits_softmax_kernel(const float* q, const float* emb_k, const float* key_mask,
                                               float* probs, int64_t rows, int64_t heads, int time, int dim,
                                               int window) {
  __shared__ float partials[kMaxRowThreads / kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform over the block: barriers are safe
    const int64_t bh = r / time, i = r % time;
    const float* mask = key_mask + (bh / heads) * time;
    float* row = probs + r * time;

    if (emb_k) {
      int64_t first, last;
      window_range(i, time, window, first, last);
      cuda::add_relative_dots(q + r * dim, emb_k, row, i, first, last, dim, window);  // q_i: r = bh * time + i
      __syncthreads();
    }

    float row_max = -INFINITY;
    for (int j = threadIdx.x; j < time; j += blockDim.x) {
      float l = row[j];
      if (mask[j] == 0.f) {
        l += -FLT_MAX;
        row[j] = l;
      }
      row_max = fmaxf(row_max, l);
    }
    row_max = block_max(row_max, partials);

    float sum = 0.f;
    for (int j = threadIdx.x; j < time; j += blockDim.x) {
      const float e = expf(row[j] - row_max);
      row[j] = e;
      sum += e;
    }
    const float inv = 1.f / block_sum(sum, partials);
    for (int j = threadIdx.x; j < time; j += blockDim.x) row[j] *= inv;
  }
}

// out[r, d] += sum over the window of p[r, j] emb_v[j - i + W, d], one thread per output element
// (consecutive threads run over d: emb_v and out coalesced, p broadcast).
__global__ void relative_values_kernel(const float* probs, const float* emb_v, float* out, int64_t n, int time,
                                       int dim, int window) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const int64_t r = idx / dim;
    const int d = static_cast<int>(idx % dim);
    const int64_t i = r % time;
    int64_t first, last;
    window_range(i, time, window, first, last);
    const float* p = probs + r * time;
    float acc = 0.f;
    for (int64_t j = first; j <= last; ++j) acc += p[j] * emb_v[(j - i + window) * dim + d];
    out[idx] += acc;
  }
}

}  // namespace

void relative_attention_forward_cuda(const float* q, const float* k, const float* v, const float* emb_k,
                                     const float* emb_v, const float* key_mask, float* out, float* probs, int64_t B,
                                     int64_t heads, int64_t time, int64_t dim, int window) {
  VC_CHECK(B >= 0 && heads >= 0 && time >= 0 && dim >= 0,
           "relative_attention: negative size in (B=" << B << ", heads=" << heads << ", T=" << time << ", D=" << dim
                                                      << ")");
  VC_CHECK(window >= 0, "relative_attention: negative window " << window);
  const int64_t BH = B * heads;
  if (BH == 0 || time == 0) return;
  // cuBLAS takes int sizes and batch counts.
  VC_CHECK(BH <= INT_MAX && time <= INT_MAX && dim <= INT_MAX,
           "relative_attention: sizes (BH=" << BH << ", T=" << time << ", D=" << dim << ") exceed the int range");
  const int bh = static_cast<int>(BH), T = static_cast<int>(time), D = static_cast<int>(dim);
  cublasHandle_t handle = cuda::cublas_handle();
  const float one = 1.f, zero = 0.f;

  // 1. probs[bh] (row-major T x T) = q k^T, i.e. column-major probs^T = k q^T with k, q read
  // as column-major D x T matrices.
  if (D > 0) {
    CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &one, k, D, time * dim, q, D,
                                           time * dim, &zero, probs, T, time * time, bh));
  } else {
    // Empty products are zero (cuBLAS rejects a leading dimension of 0).
    CUDA_CHECK(cudaMemsetAsync(probs, 0, static_cast<size_t>(BH * time * time) * sizeof(float), cuda::compute_stream()));
  }

  // 2. Relative keys, mask and softmax, in place.
  const int64_t rows = BH * time;
  const int threads = time >= kMaxRowThreads ? kMaxRowThreads : static_cast<int>((time + kWarp - 1) / kWarp * kWarp);
  VC_LAUNCH(relative_logits_softmax_kernel, blocks_for(rows, 1), threads, 0)
  (q, emb_k, key_mask, probs, rows, heads, T, D, window);
  VC_CHECK_LAUNCH("relative_logits_softmax_kernel");

  if (D == 0) return;  // out is empty
  // 3. out[bh] (row-major T x D) = probs v, i.e. column-major out^T = v^T probs^T.
  CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, &one, v, D, time * dim, probs, T,
                                         time * time, &zero, out, D, time * dim, bh));

  // 4. Relative values.
  if (emb_v) {
    const int64_t n = rows * dim;
    VC_LAUNCH(relative_values_kernel, blocks_for(n, 256), 256, 0)(probs, emb_v, out, n, T, D, window);
    VC_CHECK_LAUNCH("relative_values_kernel");
  }
}

}  // namespace vitscuda::kernels
