// The layer-norm statistics, formed identically by the forward and the backward kernels so that
// the backward normalises exactly as the forward did. Only .cu files include this.
//
// Statistics accumulate in float with the corrected two-pass scheme (Chan, Golub & LeVeque):
// pass 1 forms a rough mean m; pass 2 sums d = x - m and d^2. The d are exact or nearly so
// (x and m are close), and mean(d) corrects m's own rounding (~1e-7 |mean|), which would
// otherwise dominate x - mean when |mean| >> std: mean = m + mean(d), var = mean(d^2) - mean(d)^2,
// where mean(d)^2 is a tiny correction, not the cancellation of a one-pass E[x^2] - E[x]^2.
// The second pass reads data that is still in L1/L2. xhat = (x - m - shift) * rstd.
#pragma once
#include <cstdint>

#include "kernels/cuda/reduce.cuh"

namespace vitscuda::kernels::cuda {
namespace {

// Statistics of one normalised row (or column).
struct alignas(16) RowStats {
  float rough_mean;  // m
  float shift;       // mean(x - m)
  float rstd;        // 1 / sqrt(var + eps)
  float unused;
};

// Of the row xr [C], by one warp (lane = threadIdx.x % 32); every lane gets the statistics.
__device__ __forceinline__ RowStats row_stats(const float* xr, int C, float eps, int lane) {
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
  return RowStats{rough_mean, shift, 1.f / sqrtf(var + eps), 0.f};
}

// Channel normalisation of [B, C, T] works on tiles of 32 consecutive time columns of one batch
// item: threadIdx.x runs over the columns (each channel row of the tile is one coalesced 128-byte
// read), threadIdx.y splits the channels into kChannelGroups strided groups whose partial sums
// meet in shared memory.
constexpr int kColumnTile = 32;
constexpr int kChannelGroups = 8;

// Of the column xc (channel c at xc[c * time]) of thread (tx, ty), by the whole block; `active`
// is false for the threads past the end of time (they still take part in the barriers). The
// shared arrays belong to the caller: part_a and part_b are free again when this returns, and the
// column arrays once every thread has passed the caller's next barrier.
__device__ __forceinline__ RowStats column_stats(const float* xc, int64_t time, int C, float eps, bool active,
                                                 float (*part_a)[kColumnTile], float (*part_b)[kColumnTile],
                                                 float* column_mean, float* column_shift, float* column_rstd) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  float sum = 0.f;
  if (active)
    for (int c = ty; c < C; c += kChannelGroups) sum += xc[static_cast<int64_t>(c) * time];
  part_a[ty][tx] = sum;
  __syncthreads();
  if (ty == 0) {
    float total = 0.f;
    for (int g = 0; g < kChannelGroups; ++g) total += part_a[g][tx];
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
  part_a[ty][tx] = sum_d;
  part_b[ty][tx] = sum_d2;
  __syncthreads();
  if (ty == 0) {
    float total = 0.f, total_sq = 0.f;
    for (int g = 0; g < kChannelGroups; ++g) {
      total += part_a[g][tx];
      total_sq += part_b[g][tx];
    }
    const float shift = total / static_cast<float>(C);
    const float var = fmaxf(total_sq / static_cast<float>(C) - shift * shift, 0.f);
    column_shift[tx] = shift;
    column_rstd[tx] = 1.f / sqrtf(var + eps);
  }
  __syncthreads();
  return RowStats{rough_mean, column_shift[tx], column_rstd[tx], 0.f};
}

}  // namespace
}  // namespace vitscuda::kernels::cuda
