// CUDA relative-position attention backward, given the forward's probs P and dout (g), in the
// CPU kernel's formulation (gradients accumulate; any output may be nullptr):
//   1. dv += P^T g                                  (cuBLAS strided-batched, beta = 1)
//   2. demb_v[r] += sum over rows (bh, i) of P[i, i + r - W] g_i   (deterministic two-pass sum)
//   3. dP = g v^T                                   (cuBLAS, into scratch dS)
//   4. fused, one block per row (bh, i): dP_ij += g_i . emb_v[j - i + W] in the window;
//      dS_ij = P_ij (dP_ij - sum_l P_il dP_il) in place; dq_i += sum_{|j-i|<=W} dS_ij emb_k[j - i + W]
//   5. dq += dS k,  dk += dS^T q                    (cuBLAS, beta = 1)
//   6. demb_k[r] += sum over rows of dS[i, i + r - W] q_i          (deterministic two-pass sum)
// The additive key mask is a constant: masked keys have P = 0 and get no gradient, and a fully
// masked row (uniform P) back-propagates like any other, as on the CPU.
//
// cuBLAS is column-major: a row-major [rows, cols] matrix is the column-major [cols, rows] one,
// so row-major C = A B is column-major C^T = B^T A^T.
#include <climits>
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda/attention_window.cuh"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

using cuda::blocks_for;
using cuda::block_sum;
using cuda::kMaxRowThreads;
using cuda::kWarp;
using cuda::window_range;

// One block per row r = (bh, i) of ds, which holds dP = g v^T on entry and dS on exit.
//   a. Relative values (emb_v): warps take the window's keys j in turn, lanes split the D
//      products g_i . emb_v[j - i + W]; lane 0 adds the dot to dP_ij. The barrier publishes
//      those global writes to the block.
//   b. dot = sum_j P_ij dP_ij (block reduction), dS_ij = P_ij (dP_ij - dot); every thread
//      rewrites only the columns it read.
//   c. Relative keys (emb_k and dq): after a barrier (the window's dS come from other threads),
//      threads over d add sum_j dS_ij emb_k[j - i + W, d] to dq_i (coalesced over d).
__global__ void attention_softmax_backward_kernel(const float* probs, const float* dout, const float* emb_v,
                                                  const float* emb_k, float* ds, float* dq, int64_t rows, int time,
                                                  int dim, int window) {
  __shared__ float partials[kMaxRowThreads / kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform over the block: barriers are safe
    const int64_t i = r % time;
    const float* p = probs + r * time;
    float* row = ds + r * time;
    int64_t first, last;
    window_range(i, time, window, first, last);

    if (emb_v) {
      cuda::add_relative_dots(dout + r * dim, emb_v, row, i, first, last, dim, window);
      __syncthreads();
    }

    float local = 0.f;
    for (int j = threadIdx.x; j < time; j += blockDim.x) local += p[j] * row[j];
    const float dot = block_sum(local, partials);
    for (int j = threadIdx.x; j < time; j += blockDim.x) row[j] = p[j] * (row[j] - dot);

    if (emb_k && dq) {
      __syncthreads();
      float* dqi = dq + r * dim;
      for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        float acc = 0.f;
        for (int64_t j = first; j <= last; ++j) acc += row[j] * emb_k[(j - i + window) * dim + d];
        dqi[d] += acc;
      }
    }
    // The next row touches other rows of ds and dq; `partials` is reused only after block_sum's
    // closing barrier.
  }
}

// Relative-embedding gradient partials: demb[rr, d] = sum over rows (bh, i) of
// M[row, i + rr - W] * X[row, d] (M = P, X = dout for emb_v; M = dS, X = q for emb_k), over the
// keys inside the sequence. Chunk c covers rows [c * chunk_rows, ...) and writes partial[c, :]:
// threads over the R * D outputs (consecutive threads: consecutive d, coalesced X), each summing
// its chunk's rows in order.
constexpr int kEmbThreads = 256;
constexpr int64_t kMinEmbChunkRows = 64;
constexpr int64_t kMaxEmbChunks = 1024;

__global__ void relative_embedding_partial_kernel(const float* M, const float* X, float* partial, int64_t rows,
                                                  int time, int dim, int window, int64_t chunk_rows,
                                                  int64_t chunks) {
  const int64_t outputs = (2 * static_cast<int64_t>(window) + 1) * dim;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    const int64_t row_begin = chunk * chunk_rows;
    const int64_t row_end = row_begin + chunk_rows < rows ? row_begin + chunk_rows : rows;
    for (int64_t e = threadIdx.x; e < outputs; e += blockDim.x) {
      const int64_t rel = e / dim;
      const int d = static_cast<int>(e % dim);
      float acc = 0.f;
      int64_t i = row_begin % time;  // the query position of `row`
      for (int64_t row = row_begin; row < row_end; ++row) {
        const int64_t j = i + rel - window;
        if (j >= 0 && j < time) acc += M[row * time + j] * X[row * dim + d];
        if (++i == time) i = 0;
      }
      partial[chunk * outputs + e] = acc;
    }
  }
}

// demb[e] += sum over chunks of partial[c, e], in chunk order (in double).
__global__ void relative_embedding_finish_kernel(const float* partial, int64_t chunks, int64_t outputs, float* demb) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < outputs; e += stride) {
    double acc = 0.0;
    for (int64_t c = 0; c < chunks; ++c) acc += partial[c * outputs + e];
    demb[e] += static_cast<float>(acc);
  }
}

void relative_embedding_grad(const float* M, const float* X, float* demb, int64_t rows, int time, int dim,
                             int window) {
  const int64_t outputs = (2 * static_cast<int64_t>(window) + 1) * dim;
  const int64_t chunk_rows =
      kMinEmbChunkRows > (rows + kMaxEmbChunks - 1) / kMaxEmbChunks ? kMinEmbChunkRows
                                                                     : (rows + kMaxEmbChunks - 1) / kMaxEmbChunks;
  const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  cuda::Scratch partial(static_cast<size_t>(chunks * outputs) * sizeof(float),
                        "relative_attention backward embedding partials");
  VC_LAUNCH(relative_embedding_partial_kernel, blocks_for(chunks, 1), kEmbThreads, 0)
  (M, X, partial.as<float>(), rows, time, dim, window, chunk_rows, chunks);
  VC_CHECK_LAUNCH("relative_embedding_partial_kernel");
  VC_LAUNCH(relative_embedding_finish_kernel, blocks_for(outputs, 256), 256, 0)
  (partial.as<float>(), chunks, outputs, demb);
  VC_CHECK_LAUNCH("relative_embedding_finish_kernel");
}

}  // namespace

void relative_attention_backward_cuda(const float* q, const float* k, const float* v, const float* emb_k,
                                      const float* emb_v, const float* probs, const float* dout, float* dq, float* dk,
                                      float* dv, float* demb_k, float* demb_v, int64_t B, int64_t heads, int64_t time,
                                      int64_t dim, int window) {
  VC_CHECK(B >= 0 && heads >= 0 && time >= 0 && dim >= 0,
           "relative_attention backward: negative size in (B=" << B << ", heads=" << heads << ", T=" << time
                                                               << ", D=" << dim << ")");
  VC_CHECK(window >= 0, "relative_attention backward: negative window " << window);
  const int64_t BH = B * heads;
  // With D == 0 every gradient is empty (dq, dk, dv [BH, T, 0], demb [2W+1, 0]).
  if (BH == 0 || time == 0 || dim == 0) return;
  VC_CHECK(BH <= INT_MAX && time <= INT_MAX && dim <= INT_MAX,
           "relative_attention backward: sizes (BH=" << BH << ", T=" << time << ", D=" << dim
                                                     << ") exceed the int range");
  const int bh = static_cast<int>(BH), T = static_cast<int>(time), D = static_cast<int>(dim);
  const int64_t rows = BH * time;
  cublasHandle_t handle = cuda::cublas_handle();
  const float one = 1.f, zero = 0.f;

  // 1. dv[bh] (row-major T x D) += P^T g: column-major dv^T = g^T P, with g read as the
  // column-major D x T matrix g^T and P's column-major view (P^T) transposed.
  if (dv)
    CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, &one, dout, D, time * dim, probs,
                                           T, time * time, &one, dv, D, time * dim, bh));
  // 2. Relative values' embedding.
  if (emb_v && demb_v) relative_embedding_grad(probs, dout, demb_v, rows, T, D, window);

  const bool need_ds = dq || dk || (emb_k && demb_k);
  if (!need_ds) return;
  cuda::Scratch ds_buffer(static_cast<size_t>(BH * time * time) * sizeof(float),
                          "relative_attention backward score gradients");
  float* ds = ds_buffer.as<float>();
  // 3. dP[bh] (row-major T x T) = g v^T: column-major dP^T = v g^T (as the forward's q k^T).
  CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &one, v, D, time * dim, dout, D,
                                         time * dim, &zero, ds, T, time * time, bh));
  // 4. Relative values' share of dP, softmax backward, relative keys' share of dq.
  const int threads = time >= kMaxRowThreads ? kMaxRowThreads : static_cast<int>((time + kWarp - 1) / kWarp * kWarp);
  VC_LAUNCH(attention_softmax_backward_kernel, blocks_for(rows, 1), threads, 0)
  (probs, dout, emb_v, emb_k, ds, dq, rows, T, D, window);
  VC_CHECK_LAUNCH("attention_softmax_backward_kernel");
  // 5. dq[bh] (T x D) += dS k: column-major dq^T = k^T dS^T (as the forward's probs v).
  if (dq)
    CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, &one, k, D, time * dim, ds, T,
                                           time * time, &one, dq, D, time * dim, bh));
  //    dk[bh] (T x D) += dS^T q: column-major dk^T = q^T dS (as step 1).
  if (dk)
    CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, &one, q, D, time * dim, ds, T,
                                           time * time, &one, dk, D, time * dim, bh));
  // 6. Relative keys' embedding.
  if (emb_k && demb_k) relative_embedding_grad(ds, q, demb_k, rows, T, D, window);
}

}  // namespace vitscuda::kernels
