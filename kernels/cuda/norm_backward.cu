// CUDA normalisation backwards: LayerNorm over the last dimension, LayerNorm over the channels
// of [B, C, T], and weight normalisation. Gradients accumulate (+=); any output may be nullptr.
//
// The row (column) statistics are recomputed from x with the forward kernels' corrected two-pass
// scheme (rough mean m, then shift = mean(x - m) and var = mean((x - m)^2) - shift^2), and
// xhat = (x - m - shift) * rstd is formed in the forward's order, so the backward normalises
// exactly as the forward did. With g = dy * gamma:
//   dx += rstd * (g - mean(g) - xhat * mean(g * xhat)),  dgamma += sum dy * xhat,  dbeta += sum dy.
//
// Determinism: dgamma / dbeta sum over every row. Each partial sum is owned by one thread and
// formed in a fixed order (no atomics), partials land in scratch at positions fixed by the shape,
// and a second kernel adds them up per channel in index order (in double). The partition
// depends on the shape only (blocks_for is a function of the shape), so repeated runs, on any
// device, give bit-identical parameter gradients.
#include <algorithm>
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

// partial [parts, 2, C] (dgamma partials, then dbeta partials) -> dgamma, dbeta [C] (either may
// be nullptr), one thread per channel, parts added in index order. Reads are coalesced over c.
__global__ void param_grad_finish_kernel(const float* partial, int64_t parts, int C, float* dgamma, float* dbeta) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += stride) {
    double sum_gamma = 0.0, sum_beta = 0.0;
    for (int64_t p = 0; p < parts; ++p) {
      sum_gamma += partial[(2 * p) * C + c];
      sum_beta += partial[(2 * p + 1) * C + c];
    }
    if (dgamma) dgamma[c] += static_cast<float>(sum_gamma);
    if (dbeta) dbeta[c] += static_cast<float>(sum_beta);
  }
}

void finish_param_grads(const float* partial, int64_t parts, int C, float* dgamma, float* dbeta) {
  VC_LAUNCH(param_grad_finish_kernel, blocks_for(C, 256), 256, 0)(partial, parts, C, dgamma, dbeta);
  VC_CHECK_LAUNCH("param_grad_finish_kernel");
}

// ---------------------------------------------------------------- LayerNorm, last dimension
// 1. One warp per row (as the forward): the statistics, saved to `stats` when the parameter
//    gradients need them, and dx.
// 2. dgamma / dbeta partials: a block takes a tile of 32 consecutive channels (threadIdx.x, one
//    coalesced 128-byte read per row) of one chunk of rows, split over 8 row groups (threadIdx.y)
//    whose sums meet in shared memory; partial[chunk] gets the tile's totals.
// 3. param_grad_finish_kernel adds the chunks.
constexpr int kRowWarps = 8;
constexpr int kParamTileCols = 32;
constexpr int kParamRowGroups = 8;
constexpr int64_t kMinChunkRows = 64;
constexpr int64_t kMaxChunks = 512;

__global__ void layer_norm_rows_backward_kernel(const float* x, const float* gamma, const float* dy, float* dx,
                                                RowStats* stats, int64_t rows, int C, float eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * kRowWarps;
  const float inv_c = 1.f / static_cast<float>(C);
  for (int64_t r = first_row; r < rows; r += row_stride) {
    const float* xr = x + r * C;
    const RowStats st = row_stats(xr, C, eps, lane);
    const float rough_mean = st.rough_mean, shift = st.shift, rstd = st.rstd;
    if (stats && lane == 0) stats[r] = st;
    if (!dx) continue;  // uniform over the warp

    const float* dyr = dy + r * C;
    float sum_g = 0.f, sum_gx = 0.f;
    for (int c = lane; c < C; c += kWarp) {
      const float xhat = (xr[c] - rough_mean - shift) * rstd;
      const float g = dyr[c] * gamma[c];
      sum_g += g;
      sum_gx += g * xhat;
    }
    const float mean_g = warp_sum(sum_g) * inv_c, mean_gx = warp_sum(sum_gx) * inv_c;
    float* dxr = dx + r * C;
    for (int c = lane; c < C; c += kWarp) {
      const float xhat = (xr[c] - rough_mean - shift) * rstd;
      dxr[c] += rstd * (dyr[c] * gamma[c] - mean_g - xhat * mean_gx);
    }
  }
}

// partial [chunks, 2, C]; chunk k covers rows [k * chunk_rows, min(rows, (k + 1) * chunk_rows)).
__global__ void layer_norm_rows_param_kernel(const float* x, const float* dy, const RowStats* stats, float* partial,
                                             int64_t rows, int C, int64_t chunk_rows, int64_t chunks) {
  __shared__ float part_gamma[kParamRowGroups][kParamTileCols];
  __shared__ float part_beta[kParamRowGroups][kParamTileCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col_tiles = (static_cast<int64_t>(C) + kParamTileCols - 1) / kParamTileCols;
  const int64_t tiles = col_tiles * chunks;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // uniform: barriers are safe
    const int64_t chunk = tile / col_tiles;
    const int64_t c = (tile % col_tiles) * kParamTileCols + tx;
    const bool active = c < C;
    const int64_t r_end = (chunk + 1) * chunk_rows < rows ? (chunk + 1) * chunk_rows : rows;
    float sum_gamma = 0.f, sum_beta = 0.f;
    if (active)
      for (int64_t r = chunk * chunk_rows + ty; r < r_end; r += kParamRowGroups) {
        const RowStats s = stats[r];
        const float d = dy[r * C + c];
        const float xhat = (x[r * C + c] - s.rough_mean - s.shift) * s.rstd;
        sum_gamma += d * xhat;
        sum_beta += d;
      }
    part_gamma[ty][tx] = sum_gamma;
    part_beta[ty][tx] = sum_beta;
    __syncthreads();
    if (ty == 0 && active) {
      float total_gamma = 0.f, total_beta = 0.f;
      for (int g = 0; g < kParamRowGroups; ++g) {
        total_gamma += part_gamma[g][tx];
        total_beta += part_beta[g][tx];
      }
      partial[(2 * chunk) * C + c] = total_gamma;
      partial[(2 * chunk + 1) * C + c] = total_beta;
    }
    __syncthreads();  // the next tile rewrites the shared partials
  }
}

// ---------------------------------------------------------------- LayerNorm, channel dimension
// The forward's tiling: a block takes 32 consecutive time columns of one batch item (threadIdx.x,
// coalesced), threadIdx.y splits the channels into 8 strided groups meeting in shared memory.
// Per tile: the column statistics, then the column sums of g and g * xhat (for dx) and, for each
// channel, the tile's sums of dy * xhat and dy across its 32 columns by a warp reduction (a warp
// is one channel group: blockDim.x == 32). Lane 0 of the warp adds those into the block's own
// partial row, partial[blockIdx.x, :, c], which no other thread touches: the grid is capped at a
// shape-determined size and each block loops over tiles in a fixed order.
constexpr unsigned kMaxChannelBlocks = 1024;

__global__ void layer_norm_channels_backward_kernel(const float* x, const float* gamma, const float* dy, float* dx,
                                                    float* partial, int B, int C, int time, float eps) {
  __shared__ float part_a[kChannelGroups][kColumnTile];
  __shared__ float part_b[kChannelGroups][kColumnTile];
  __shared__ float column_mean[kColumnTile];   // the rough mean m, then mean(g)
  __shared__ float column_shift[kColumnTile];  // mean(x - m), then mean(g * xhat)
  __shared__ float column_rstd[kColumnTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const float inv_c = 1.f / static_cast<float>(C);
  float* my_partial = partial ? partial + static_cast<int64_t>(blockIdx.x) * 2 * C : nullptr;
  if (my_partial && tx == 0)
    for (int c = ty; c < C; c += kChannelGroups) {
      my_partial[c] = 0.f;
      my_partial[C + c] = 0.f;
    }
  const int64_t tiles_per_item = (static_cast<int64_t>(time) + kColumnTile - 1) / kColumnTile;
  const int64_t tiles = tiles_per_item * B;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {  // uniform: barriers are safe
    const int64_t b = tile / tiles_per_item;
    const int64_t t = (tile % tiles_per_item) * kColumnTile + tx;
    const bool active = t < time;
    const int64_t column = b * C * time + t;  // channel c of this column at column + c * time
    const float* xc = x + column;
    const float* dyc = dy + column;

    // Statistics, as the forward.
    const RowStats st =
        column_stats(xc, time, C, eps, active, part_a, part_b, column_mean, column_shift, column_rstd);
    const float rough_mean = st.rough_mean, shift = st.shift, rstd = st.rstd;

    // Column sums of g and g * xhat; per-channel parameter partials.
    float sum_g = 0.f, sum_gx = 0.f;
    for (int c = ty; c < C; c += kChannelGroups) {  // uniform over the warp (one ty per warp)
      const int64_t off = static_cast<int64_t>(c) * time;
      const float xhat = active ? (xc[off] - rough_mean - shift) * rstd : 0.f;
      const float d = active ? dyc[off] : 0.f;
      const float g = d * gamma[c];
      sum_g += g;
      sum_gx += g * xhat;
      if (my_partial) {
        const float tile_gamma = warp_sum(d * xhat), tile_beta = warp_sum(d);
        if (tx == 0) {
          my_partial[c] += tile_gamma;
          my_partial[C + c] += tile_beta;
        }
      }
    }
    if (!dx) continue;  // uniform over the block; the next tile's first barrier orders the reuse
    part_a[ty][tx] = sum_g;
    part_b[ty][tx] = sum_gx;
    __syncthreads();
    if (ty == 0) {
      float total_g = 0.f, total_gx = 0.f;
      for (int g = 0; g < kChannelGroups; ++g) {
        total_g += part_a[g][tx];
        total_gx += part_b[g][tx];
      }
      column_mean[tx] = total_g * inv_c;
      column_shift[tx] = total_gx * inv_c;
    }
    __syncthreads();
    const float mean_g = column_mean[tx], mean_gx = column_shift[tx];
    if (active) {
      float* dxc = dx + column;
      for (int c = ty; c < C; c += kChannelGroups) {
        const int64_t off = static_cast<int64_t>(c) * time;
        const float xhat = (xc[off] - rough_mean - shift) * rstd;
        dxc[off] += rstd * (dyc[off] * gamma[c] - mean_g - xhat * mean_gx);
      }
    }
    // The next tile writes part_a before its first barrier (this tile's reads of it ended before
    // the last barrier) and the column values only after it (after every read above).
  }
}

// ---------------------------------------------------------------- weight norm
// One block per row of v (as the forward): sum v^2 and sum dw * v by block reductions (fixed
// order, every thread sees the same totals), then dg[o] += dot / ||v|| and
// dv += (g / ||v||) * (dw - v * dot / ||v||^2).
constexpr int kWeightNormThreads = 256;

__global__ void weight_norm_backward_kernel(const float* g, const float* v, const float* dw, float* dg, float* dv,
                                            int rows, int n) {
  __shared__ float warp_sq[kWeightNormThreads / kWarp];
  __shared__ float warp_dot[kWeightNormThreads / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int o = blockIdx.x; o < rows; o += gridDim.x) {
    const float* vr = v + static_cast<int64_t>(o) * n;
    const float* dwr = dw + static_cast<int64_t>(o) * n;
    float sq = 0.f, dot = 0.f;
    for (int j = threadIdx.x; j < n; j += kWeightNormThreads) {
      sq += vr[j] * vr[j];
      dot += dwr[j] * vr[j];
    }
    sq = warp_sum(sq);
    dot = warp_sum(dot);
    if (lane == 0) {
      warp_sq[warp] = sq;
      warp_dot[warp] = dot;
    }
    __syncthreads();
    float total_sq = 0.f, total_dot = 0.f;
    for (int i = 0; i < kWeightNormThreads / kWarp; ++i) {
      total_sq += warp_sq[i];
      total_dot += warp_dot[i];
    }
    __syncthreads();  // the next row rewrites the warp partials
    const float norm = sqrtf(total_sq);
    if (dg && threadIdx.x == 0) dg[o] += total_dot / norm;
    if (dv) {
      const float scale = g[o] / norm, proj = total_dot / total_sq;
      float* dvr = dv + static_cast<int64_t>(o) * n;
      for (int j = threadIdx.x; j < n; j += kWeightNormThreads) dvr[j] += scale * (dwr[j] - vr[j] * proj);
    }
  }
}

void check_sizes(const char* who, int a, int b, int c, double eps) {
  VC_CHECK(a >= 0 && b >= 0 && c >= 0, who << ": negative size in (" << a << ", " << b << ", " << c << ")");
  VC_CHECK(eps >= 0.0, who << ": eps " << eps << " must be >= 0");
}

}  // namespace

void layer_norm_backward_cuda(const float* x, const float* gamma, const float* dy, float* dx, float* dgamma,
                              float* dbeta, int rows, int C, double eps) {
  check_sizes("layer_norm backward", rows, C, 0, eps);
  const bool params = dgamma || dbeta;
  if (rows == 0 || C == 0 || !(dx || params)) return;  // nothing to accumulate
  cuda::Scratch stats(params ? static_cast<size_t>(rows) * sizeof(RowStats) : 0, "layer_norm backward row statistics");
  const int64_t row_blocks = (static_cast<int64_t>(rows) + kRowWarps - 1) / kRowWarps;
  VC_LAUNCH(layer_norm_rows_backward_kernel, blocks_for(row_blocks, 1), kRowWarps * kWarp, 0)
  (x, gamma, dy, dx, stats.as<RowStats>(), rows, C, static_cast<float>(eps));
  VC_CHECK_LAUNCH("layer_norm_rows_backward_kernel");
  if (!params) return;

  const int64_t chunk_rows = std::max(kMinChunkRows, (static_cast<int64_t>(rows) + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  cuda::Scratch partial(static_cast<size_t>(chunks) * 2 * C * sizeof(float), "layer_norm backward parameter partials");
  const int64_t tiles = chunks * ((static_cast<int64_t>(C) + kParamTileCols - 1) / kParamTileCols);
  VC_LAUNCH(layer_norm_rows_param_kernel, blocks_for(tiles, 1), dim3(kParamTileCols, kParamRowGroups), 0)
  (x, dy, stats.as<RowStats>(), partial.as<float>(), rows, C, chunk_rows, chunks);
  VC_CHECK_LAUNCH("layer_norm_rows_param_kernel");
  finish_param_grads(partial.as<float>(), chunks, C, dgamma, dbeta);
}

void layer_norm_channels_backward_cuda(const float* x, const float* gamma, const float* dy, float* dx, float* dgamma,
                                       float* dbeta, int B, int C, int T_len, double eps) {
  check_sizes("layer_norm_channels backward", B, C, T_len, eps);
  const bool params = dgamma || dbeta;
  if (B == 0 || C == 0 || T_len == 0 || !(dx || params)) return;
  const int64_t tiles = static_cast<int64_t>(B) * ((static_cast<int64_t>(T_len) + kColumnTile - 1) / kColumnTile);
  // The grid fixes the partition of the parameter sums: a function of the shape alone.
  const unsigned blocks = std::min(blocks_for(tiles, 1), kMaxChannelBlocks);
  cuda::Scratch partial(params ? static_cast<size_t>(blocks) * 2 * C * sizeof(float) : 0,
                        "layer_norm_channels backward parameter partials");
  VC_LAUNCH(layer_norm_channels_backward_kernel, blocks, dim3(kColumnTile, kChannelGroups), 0)
  (x, gamma, dy, dx, partial.as<float>(), B, C, T_len, static_cast<float>(eps));
  VC_CHECK_LAUNCH("layer_norm_channels_backward_kernel");
  if (params) finish_param_grads(partial.as<float>(), blocks, C, dgamma, dbeta);
}

void weight_norm_backward_cuda(const float* g, const float* v, const float* dw, float* dg, float* dv, int rows,
                               int n) {
  VC_CHECK(rows >= 0 && n >= 0, "weight_norm backward: negative size (" << rows << ", " << n << ")");
  if (rows == 0 || !(dg || dv)) return;
  // n == 0 still has a gradient for g, as on the CPU: 0 / 0 (NaN).
  VC_LAUNCH(weight_norm_backward_kernel, blocks_for(rows, 1), kWeightNormThreads, 0)(g, v, dw, dg, dv, rows, n);
  VC_CHECK_LAUNCH("weight_norm_backward_kernel");
}

}  // namespace vitscuda::kernels
