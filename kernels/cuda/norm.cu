// CUDA normalisation forwards: LayerNorm over the last dimension, LayerNorm over the channels
// of [B, C, T], and weight normalisation. The statistics: norm_stats.cuh (a corrected two-pass
// scheme in float).
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/norm_stats.cuh"
#include "kernels/norm.h"

namespace vitscuda::kernels {

namespace {

using cuda::blocks_for;
using cuda::column_stats;
using cuda::kChannelGroups;
using cuda::kColumnTile;
using cuda::kWarp;
using cuda::row_stats;
using cuda::RowStats;
using cuda::warp_sum;

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
    const RowStats st = row_stats(xr, C, eps, lane);
    for (int c = lane; c < C; c += kWarp) yr[c] = (xr[c] - st.rough_mean - st.shift) * st.rstd * gamma[c] + beta[c];
  }
}

// ---------------------------------------------------------------- LayerNorm, channel dimension
// A block normalises a tile of kColumnTile time columns of one batch item (norm_stats.cuh).
// Writes follow the barriers that end all reads of the tile, so y may alias x.
__global__ void layer_norm_channels_kernel(const float* x, const float* gamma, const float* beta, float* y, int B,
                                           int C, int time, float eps) {
  __shared__ float part_a[kChannelGroups][kColumnTile];
  __shared__ float part_b[kChannelGroups][kColumnTile];
  __shared__ float column_mean[kColumnTile];
  __shared__ float column_shift[kColumnTile];
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

    const RowStats st =
        column_stats(xc, time, C, eps, active, part_a, part_b, column_mean, column_shift, column_rstd);
    if (active)
      for (int c = ty; c < C; c += kChannelGroups) {
        const int64_t off = static_cast<int64_t>(c) * time;
        yc[off] = (xc[off] - st.rough_mean - st.shift) * st.rstd * gamma[c] + beta[c];
      }
    // The next tile writes part_a after this tile's last barrier (which ends every read of it)
    // and the column statistics after its own first barrier, once every thread has read them.
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
