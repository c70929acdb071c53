// Deterministic bias-gradient reductions (see bias_grad.cuh).
//
// Each output channel's elements are split into S chunks (S depends on the shape only, chosen
// so that the grid fills the device when there are few channels). A block sums one
// (channel, chunk) item: every thread keeps a compensated (Kahan) float sum of its strided
// elements, which keeps full float accuracy at float speed (fp64 throughput is 1/32 of fp32 on
// consumer GPUs); the block then combines its threads' sums in double in a fixed tree order.
// With S == 1 the block adds the double total, rounded once to float, to db; otherwise a
// second kernel adds each channel's S partials in order. No atomics anywhere, so the result
// is reproducible bit for bit. The CPU reference sums in double and rounds once, so the two
// agree to about a float rounding of the result plus ~2^-24 of the sum of |dy|.
#include <algorithm>

#include "kernels/cuda/bias_grad.cuh"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels::cuda {

namespace {

constexpr int kThreads = 256;             // block size of both stage-1 kernels (the trees assume it)
constexpr int kRowLanes = 32;             // rows kernel: columns per block (one warp wide) ...
constexpr int kRowGroups = kThreads / kRowLanes;  // ... and rows read at once
constexpr int64_t kTargetItems = 2048;    // enough blocks to fill any current GPU several times
constexpr int64_t kMinChunk = 4096;       // elements per block below which splitting does not pay
constexpr int64_t kMaxSplit = 1024;

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

struct Compensated {
  float sum = 0.0f, carry = 0.0f;
  __device__ __forceinline__ void add(float v) {  // Kahan: carry holds the low part lost by sum
    const float y = v - carry;
    const float t = sum + y;
    carry = (t - sum) - y;
    sum = t;
  }
  __device__ __forceinline__ double value() const { return static_cast<double>(sum) - static_cast<double>(carry); }
};

// Sums shared[0, kThreads) into shared[0] in a fixed order. Every thread of the block calls it.
__device__ __forceinline__ void block_tree_sum(double* shared) {
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width >>= 1) {
    if (static_cast<int>(threadIdx.x) < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
}

// Item = c * S + s sums chunk s, elements e in [s*chunk, min(E, (s+1)*chunk)) with E = B*T and
// e = n*T + t, of channel c. Result: db[c] += total (S == 1) or partial[item] = total.
__global__ void channel_sum_kernel(const float* __restrict__ dy, float* __restrict__ db, double* __restrict__ partial,
                                   int64_t B, int64_t C, int64_t T, int64_t S, int64_t chunk) {
  __shared__ double shared[kThreads];
  const int64_t E = B * T;
  const int64_t step_n = kThreads / T, step_t = kThreads % T;  // advancing e by kThreads
  for (int64_t item = blockIdx.x; item < C * S; item += gridDim.x) {
    const int64_t c = item / S, s = item % S;
    const int64_t e1 = min64(E, (s + 1) * chunk);
    Compensated acc;
    int64_t e = s * chunk + threadIdx.x;
    if (e < e1) {
      int64_t n = e / T, t = e - n * T;
      for (; e < e1; e += kThreads) {
        acc.add(dy[(n * C + c) * T + t]);
        n += step_n;
        t += step_t;
        if (t >= T) {
          t -= T;
          ++n;
        }
      }
    }
    shared[threadIdx.x] = acc.value();
    block_tree_sum(shared);
    if (threadIdx.x == 0) {
      if (partial)
        partial[item] = shared[0];
      else
        db[c] += static_cast<float>(shared[0]);
    }
    __syncthreads();  // shared[0] is read before the next item overwrites it
  }
}

// Item = cb * S + s: columns [cb*32, cb*32 + 32), rows [s*chunk, min(R, (s+1)*chunk)). Thread
// (lane, group) sums rows group, group + 8, ... of column cb*32 + lane: a warp reads 32
// consecutive floats of a row. Result per column as in channel_sum_kernel.
__global__ void row_sum_kernel(const float* __restrict__ dy, float* __restrict__ db, double* __restrict__ partial,
                               int64_t R, int64_t C, int64_t S, int64_t chunk) {
  __shared__ double shared[kThreads];
  const int lane = threadIdx.x % kRowLanes, group = threadIdx.x / kRowLanes;
  const int64_t col_blocks = (C + kRowLanes - 1) / kRowLanes;
  for (int64_t item = blockIdx.x; item < col_blocks * S; item += gridDim.x) {
    const int64_t cb = item / S, s = item % S;
    const int64_t col = cb * kRowLanes + lane;
    const int64_t r1 = min64(R, (s + 1) * chunk);
    Compensated acc;
    if (col < C)
      for (int64_t r = s * chunk + group; r < r1; r += kRowGroups) acc.add(dy[r * C + col]);
    shared[threadIdx.x] = acc.value();
    __syncthreads();
    if (group == 0 && col < C) {
      double total = 0.0;
      for (int g = 0; g < kRowGroups; ++g) total += shared[g * kRowLanes + lane];
      if (partial)
        partial[col * S + s] = total;
      else
        db[col] += static_cast<float>(total);
    }
    __syncthreads();
  }
}

// db[c] += sum over s of partial[c*S + s], in order.
__global__ void partial_sum_kernel(const double* __restrict__ partial, float* __restrict__ db, int64_t C, int64_t S) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t s = 0; s < S; ++s) total += partial[c * S + s];
    db[c] += static_cast<float>(total);
  }
}

// Chunks per channel for `items` independent outputs of `elements` elements each.
int64_t split_for(int64_t items, int64_t elements) {
  if (items >= kTargetItems) return 1;
  const int64_t want = (kTargetItems + items - 1) / items;
  const int64_t worth = (elements + kMinChunk - 1) / kMinChunk;
  return std::max<int64_t>(1, std::min({want, worth, kMaxSplit}));
}

void finish_partials(const Scratch& partial, float* db, int64_t C, int64_t S) {
  VC_LAUNCH(partial_sum_kernel, blocks_for(C, 128), 128, 0)(partial.as<double>(), db, C, S);
  VC_CHECK_LAUNCH("bias gradient partial sums");
}

}  // namespace

void bias_grad_channels(const float* dy, float* db, int64_t B, int64_t C, int64_t T) {
  if (!db || B <= 0 || C <= 0 || T <= 0) return;
  if (T == 1) {  // [B, C, 1] is [B, C]: the row kernel reads it coalesced
    bias_grad_rows(dy, db, B, C);
    return;
  }
  const int64_t E = B * T;
  int64_t S = split_for(C, E);
  const int64_t chunk = (E + S - 1) / S;
  S = (E + chunk - 1) / chunk;  // no empty chunks
  Scratch partial(S > 1 ? sizeof(double) * size_t(C * S) : 0, "bias gradient partial sums");
  VC_LAUNCH(channel_sum_kernel, blocks_for(C * S, 1), kThreads, 0)(dy, db, S > 1 ? partial.as<double>() : nullptr,
                                                                   B, C, T, S, chunk);
  VC_CHECK_LAUNCH("bias gradient (channels)");
  if (S > 1) finish_partials(partial, db, C, S);
}

void bias_grad_rows(const float* dy, float* db, int64_t R, int64_t C) {
  if (!db || R <= 0 || C <= 0) return;
  const int64_t col_blocks = (C + kRowLanes - 1) / kRowLanes;
  // A row-kernel block reads kRowLanes columns per row, so its chunk counts rows * 32 elements.
  int64_t S = split_for(col_blocks, R * kRowLanes);
  const int64_t chunk = (R + S - 1) / S;
  S = (R + chunk - 1) / chunk;
  Scratch partial(S > 1 ? sizeof(double) * size_t(C * S) : 0, "bias gradient partial sums");
  VC_LAUNCH(row_sum_kernel, blocks_for(col_blocks * S, 1), kThreads, 0)(dy, db,
                                                                        S > 1 ? partial.as<double>() : nullptr, R, C,
                                                                        S, chunk);
  VC_CHECK_LAUNCH("bias gradient (rows)");
  if (S > 1) finish_partials(partial, db, C, S);
}

}  // namespace vitscuda::kernels::cuda
