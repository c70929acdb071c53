// CUDA normalisation forwards: LayerNorm over the last dimension, LayerNorm over the channels
// of [B, C, T], and weight normalisation.
//
// Statistics accumulate in float with the corrected two-pass scheme (Chan, Golub & LeVeque):
// pass 1 forms a rough mean m; pass 2 sums d = x - m and d^2. The d are exact or nearly so
// (x and m are close), and mean(d) corrects m's own rounding (~1e-7 |mean|), which would
// otherwise dominate x - mean when |mean| >> std: mean = m + mean(d), var = mean(d^2) - mean(d)^2,
// where mean(d)^2 is a tiny correction, not the cancellation of a one-pass E[x^2] - E[x]^2.
// The second pass reads data that is still in L1/L2.
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/norm.h"

namespace vitscuda::kernels {

namespace {

using cuda::blocks_for;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;  // every lane holds the total
}

// ---------------------------------------------------------------- LayerNorm, last dimension
// One warp per row: rows are short (the hidden size), so a warp reads a row in a few coalesced
// sweeps and reduces with shuffles alone, without block barriers.
constexpr int kRowWarps = 8;

// Each element is read before it is written, by the same thread: y may alias x.
__global__ void layer_norm_rows_kernel(const float* x, const float* gamma, const float* beta, float* y, int64_t rows,
                                       int C, float eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * kRowWarps;
  for (int64_t r = first_row; r < rows; r += row_stride) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float sum = 0.f;
    for (int c = lane; c < C; c += kWarp) sum += xr[c];
    const float rough_mean = warp_sum(sum) / static_cast<float>(C);
    float sum_d = 0.f, sum_d2 = 0.f;
    for (int c = lane; c < C; c += kWarp) {
      const float d = xr[c] - rough_mean;
      sum_d += d;
      sum_d2 += d * d;
    }
    const float shift = warp_sum(sum_d) / static_cast<float>(C);
    const float var = fmaxf(warp_sum(sum_d2) / static_cast<float>(C) - shift * shift, 0.f);
    const float rstd = 1.f / sqrtf(var + eps);
    for (int c = lane; c < C; c += kWarp) yr[c] = (xr[c] - rough_mean - shift) * rstd * gamma[c] + beta[c];
  }
}

// ---------------------------------------------------------------- LayerNorm, channel dimension
// A block normalises a tile of 32 consecutive time columns of one batch item: threadIdx.x runs
// over the columns (each channel row of the tile is one coalesced 128-byte read), threadIdx.y
// splits the channels into kChannelGroups strided groups whose partial sums meet in shared memory.
// Writes follow the barriers that end all reads of the tile, so y may alias x.
constexpr int kColumnTile = 32;
constexpr int kChannelGroups = 8;

__global__ void layer_norm_channels_kernel(const float* x, const float* gamma, const float* beta, float* y, int B,
                                           int C, int time, float eps) {
  __shared__ float partial[kChannelGroups][kColumnTile];
  __shared__ float partial_sq[kChannelGroups][kColumnTile];
  __shared__ float column_mean[kColumnTile];   // the rough mean m
  __shared__ float column_shift[kColumnTile];  // its correction mean(x - m)
  __shared__ float column_rstd[kColumnTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tiles_per_item = (static_cast<int64_t>(time) + kColumnTile - 1) / kColumnTile;
  const int64_t tiles = tiles_per_item * B;
  // The loop bounds are uniform over the block, so every thread reaches every barrier.
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t b = tile / tiles_per_item;
    const int64_t t = (tile % tiles_per_item) * kColumnTile + tx;
    const bool active = t < time;
    const float* xc = x + b * C * time + t;  // column t of item b; channel c at xc[c * time]
    float* yc = y + b * C * time + t;

    float sum = 0.f;
    if (active)
      for (int c = ty; c < C; c += kChannelGroups) sum += xc[static_cast<int64_t>(c) * time];
    partial[ty][tx] = sum;
    __syncthreads();
    if (ty == 0) {
      float total = 0.f;
      for (int g = 0; g < kChannelGroups; ++g) total += partial[g][tx];
      column_mean[tx] = total / static_cast<float>(C);
    }
    __syncthreads();
    const float rough_mean = column_mean[tx];

    float sum_d = 0.f, sum_d2 = 0.f;
    if (active)
      for (int c = ty; c < C; c += kChannelGroups) {
        const float d = xc[static_cast<int64_t>(c) * time] - rough_mean;
        sum_d += d;
        sum_d2 += d * d;
      }
    partial[ty][tx] = sum_d;
    partial_sq[ty][tx] = sum_d2;
    __syncthreads();
    if (ty == 0) {
      float total = 0.f, total_sq = 0.f;
      for (int g = 0; g < kChannelGroups; ++g) {
        total += partial[g][tx];
        total_sq += partial_sq[g][tx];
      }
      const float shift = total / static_cast<float>(C);
      const float var = fmaxf(total_sq / static_cast<float>(C) - shift * shift, 0.f);
      column_shift[tx] = shift;
      column_rstd[tx] = 1.f / sqrtf(var + eps);
    }
    __syncthreads();
    const float shift = column_shift[tx], rstd = column_rstd[tx];

    if (active)
      for (int c = ty; c < C; c += kChannelGroups) {
        const int64_t off = static_cast<int64_t>(c) * time;
        yc[off] = (xc[off] - rough_mean - shift) * rstd * gamma[c] + beta[c];
      }
    // The next tile rewrites partial[] only after its first barrier and the column statistics
    // only after its second, by which point every thread has finished this tile's reads.
  }
}

// ---------------------------------------------------------------- weight norm
// One block per row of v: ||v[o]|| by a block reduction (squares are non-negative, so a float
// sum has no cancellation), then w[o] = v[o] * (g[o] / ||v[o]||).
constexpr int kWeightNormThreads = 256;

__global__ void weight_norm_kernel(const float* g, const float* v, float* w, int rows, int n) {
  __shared__ float warp_partial[kWeightNormThreads / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int o = blockIdx.x; o < rows; o += gridDim.x) {
    const float* vr = v + static_cast<int64_t>(o) * n;
    float* wr = w + static_cast<int64_t>(o) * n;
    float sq = 0.f;
    for (int j = threadIdx.x; j < n; j += kWeightNormThreads) sq += vr[j] * vr[j];
    sq = warp_sum(sq);
    if (lane == 0) warp_partial[warp] = sq;
    __syncthreads();
    float total = 0.f;  // every thread adds the partials in the same order: one value block-wide
    for (int i = 0; i < kWeightNormThreads / kWarp; ++i) total += warp_partial[i];
    __syncthreads();  // the next row rewrites warp_partial
    // As the CPU kernel (and torch): the norm rounded to float, the factor formed in float.
    const float factor = g[o] / sqrtf(total);
    for (int j = threadIdx.x; j < n; j += kWeightNormThreads) wr[j] = vr[j] * factor;
  }
}

void check_sizes(const char* who, int a, int b, int c, double eps) {
  VC_CHECK(a >= 0 && b >= 0 && c >= 0, who << ": negative size in (" << a << ", " << b << ", " << c << ")");
  VC_CHECK(eps >= 0.0, who << ": eps " << eps << " must be >= 0");
}

}  // namespace

void layer_norm_forward_cuda(const float* x, const float* gamma, const float* beta, float* y, int rows, int C,
                             double eps) {
  check_sizes("layer_norm", rows, C, 0, eps);
  if (rows == 0 || C == 0) return;  // as the CPU kernel: nothing is written
  const int64_t blocks = (static_cast<int64_t>(rows) + kRowWarps - 1) / kRowWarps;
  VC_LAUNCH(layer_norm_rows_kernel, blocks_for(blocks, 1), kRowWarps * kWarp, 0)
  (x, gamma, beta, y, rows, C, static_cast<float>(eps));
  VC_CHECK_LAUNCH("layer_norm_rows_kernel");
}

void layer_norm_channels_forward_cuda(const float* x, const float* gamma, const float* beta, float* y, int B, int C,
                                      int T_len, double eps) {
  check_sizes("layer_norm_channels", B, C, T_len, eps);
  if (B == 0 || C == 0 || T_len == 0) return;
  const int64_t tiles = static_cast<int64_t>(B) * ((static_cast<int64_t>(T_len) + kColumnTile - 1) / kColumnTile);
  VC_LAUNCH(layer_norm_channels_kernel, blocks_for(tiles, 1), dim3(kColumnTile, kChannelGroups), 0)
  (x, gamma, beta, y, B, C, T_len, static_cast<float>(eps));
  VC_CHECK_LAUNCH("layer_norm_channels_kernel");
}

void weight_norm_forward_cuda(const float* g, const float* v, float* w, int rows, int n) {
  VC_CHECK(rows >= 0 && n >= 0, "weight_norm: negative size (" << rows << ", " << n << ")");
  if (rows == 0 || n == 0) return;
  VC_LAUNCH(weight_norm_kernel, blocks_for(rows, 1), kWeightNormThreads, 0)(g, v, w, rows, n);
  VC_CHECK_LAUNCH("weight_norm_kernel");
}

}  // namespace vitscuda::kernels
