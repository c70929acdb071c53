// CUDA AdamW over flat buffers and the flat reductions around it (the device counterpart of
// kernels/cpu/adam.cpp).
//
// adamw_update_cuda is one launch for all ranges. The covered elements are numbered 0..covered-1 range
// after range (offset[r] = elements in the ranges before r), so frozen gaps cost nothing; a thread finds
// its first element's range by binary search over the offsets and then walks forward (grid-stride indices
// only grow). Up to kInlineRanges ranges travel by value in the launch's arguments (kernel-parameter
// constant bank); more are uploaded.
//
// Bit-exactness with adamw_update_cpu<float>: the scalars are formed on the host with the CPU's code, and
// every elementwise operation is written as the CPU's, with explicit IEEE-rounded intrinsics so nvcc
// cannot contract a multiply and an add into an FMA the CPU does not do:
//   g     = (grad * grad_scale) * clip_coef               __fmul_rn x2          (CPU: two multiplies)
//   p     = param * decay_factor                          __fmul_rn             (CPU: multiply)
//   m'    = fma(lerp_coeff, g - m, anchor ? g : m)        __fsub_rn, __fmaf_rn  (CPU: std::fma)
//   v'    = fma(one_minus_beta2 * g, g, v * beta2)        __fmul_rn x2, __fmaf_rn (CPU: std::fma)
//   denom = sqrt(v') / bc2_sqrt + eps                     __fsqrt_rn, __fdiv_rn, __fadd_rn
//   param = p + (neg_step_size * m') / denom              __fmul_rn, __fdiv_rn, __fadd_rn
// All are correctly rounded on both sides (the CPU's std::sqrt and / are IEEE; CUDA keeps denormals without
// -ftz), so the results are identical bit for bit, not merely within 1 ulp.
//
// flat_sum_squares_cuda: exact float squares summed in double; per-thread grid-stride partials, a
// shared-memory tree per block, then one block sums the block partials in a fixed order (the grid depends
// only on n: deterministic).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/error.h"
#include "kernels/adam.h"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

using cuda::blocks_for;

constexpr int kThreads = 256;
constexpr int kReduceThreads = 256;
constexpr int kMaxReduceBlocks = 1024;
constexpr int kInlineRanges = 64;

struct Coefficients {
  float grad_scale, clip_coef, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size, lerp_coeff;
  int lerp_anchor_is_end;
};

// Ranges by value (at most kInlineRanges).
struct InlineRanges {
  int count;
  int64_t begin[kInlineRanges];
  int64_t offset[kInlineRanges];  // covered elements before range r
  float decay[kInlineRanges];     // float(1 - lr * weight_decay)
  __device__ __forceinline__ int64_t begin_of(int r) const { return begin[r]; }
  __device__ __forceinline__ int64_t offset_of(int r) const { return offset[r]; }
  __device__ __forceinline__ float decay_of(int r) const { return decay[r]; }
};

// Ranges in device memory (any number).
struct DeviceRanges {
  int count;
  const int64_t* begin;
  const int64_t* offset;
  const float* decay;
  __device__ __forceinline__ int64_t begin_of(int r) const { return begin[r]; }
  __device__ __forceinline__ int64_t offset_of(int r) const { return offset[r]; }
  __device__ __forceinline__ float decay_of(int r) const { return decay[r]; }
};

template <class Ranges>
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t covered, Ranges ranges,
                             Coefficients c) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= covered) return;
  // The last range starting at or before i (empty ranges were dropped on the host).
  int lo = 0, hi = ranges.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (ranges.offset_of(mid) <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  int r = lo;
  for (; i < covered; i += stride) {
    while (r + 1 < ranges.count && ranges.offset_of(r + 1) <= i) ++r;
    const int64_t e = ranges.begin_of(r) + (i - ranges.offset_of(r));
    const float g = __fmul_rn(__fmul_rn(grad[e], c.grad_scale), c.clip_coef);
    const float p = __fmul_rn(param[e], ranges.decay_of(r));
    const float mo = m[e], vo = v[e];
    const float mi = __fmaf_rn(c.lerp_coeff, __fsub_rn(g, mo), c.lerp_anchor_is_end ? g : mo);
    const float vi = __fmaf_rn(__fmul_rn(c.one_minus_beta2, g), g, __fmul_rn(vo, c.beta2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
    param[e] = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step_size, mi), denom));
    m[e] = mi;
    v[e] = vi;
  }
}

__device__ __forceinline__ void block_sum(double* a) {
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) a[threadIdx.x] += a[threadIdx.x + s];
    __syncthreads();
  }
}

__global__ void sum_squares_partial_kernel(const float* x, int64_t n, double* partials) {
  __shared__ double acc[kReduceThreads];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  double s = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double xi = static_cast<double>(x[i]);
    s += xi * xi;  // exact: a float's square fits a double
  }
  acc[threadIdx.x] = s;
  __syncthreads();
  block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc[0];
}

__global__ void sum_final_kernel(const double* partials, int count, double* out) {
  __shared__ double acc[kReduceThreads];
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += kReduceThreads) s += partials[i];
  acc[threadIdx.x] = s;
  __syncthreads();
  block_sum(acc);
  if (threadIdx.x == 0) *out = acc[0];
}

__global__ void scale_kernel(float* x, int64_t n, float factor) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = __fmul_rn(x[i], factor);
}

void check_ranges(const std::vector<AdamRange>& ranges, int64_t n) {
  int64_t previous_end = 0;
  for (size_t r = 0; r < ranges.size(); ++r) {
    const AdamRange& range = ranges[r];
    VC_CHECK(range.begin >= previous_end && range.begin <= range.end && range.end <= n,
             "adamw (cuda): range " << r << " [" << range.begin << ", " << range.end
                                    << ") is not sorted, non-overlapping and within the " << n
                                    << "-element buffers (previous range ended at " << previous_end << ")");
    VC_CHECK(std::isfinite(range.weight_decay) && range.weight_decay >= 0.0,
             "adamw (cuda): range " << r << " has weight decay " << range.weight_decay
                                    << ", expected a finite value >= 0");
    previous_end = range.end;
  }
}

}  // namespace

void adamw_update_cuda(float* param, const float* grad, float* m, float* v, int64_t n,
                       const std::vector<AdamRange>& ranges, const AdamStepScalars& s) {
  VC_CHECK(n >= 0, "adamw (cuda): negative element count " << n);
  check_ranges(ranges, n);
  VC_CHECK(s.step >= 1, "adamw (cuda): step " << s.step << " must be >= 1 (the count after this update)");

  // The host scalars exactly as adamw_update_cpu forms them (_single_tensor_adam's Python floats).
  const double step = static_cast<double>(s.step);
  const double bias_correction1 = 1.0 - std::pow(s.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(s.beta2, step);
  const double step_size = s.lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  Coefficients c;
  c.grad_scale = static_cast<float>(s.grad_scale);
  c.clip_coef = static_cast<float>(s.clip_coef);
  const float lerp_weight = static_cast<float>(1.0 - s.beta1);
  const bool anchor_is_end = !(std::fabs(lerp_weight) < 0.5f);
  c.lerp_anchor_is_end = anchor_is_end ? 1 : 0;
  c.lerp_coeff = anchor_is_end ? lerp_weight - 1.f : lerp_weight;
  c.beta2 = static_cast<float>(s.beta2);
  c.one_minus_beta2 = static_cast<float>(1.0 - s.beta2);
  c.bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
  c.eps = static_cast<float>(s.eps);
  c.neg_step_size = static_cast<float>(-step_size);

  std::vector<int64_t> begin, offset;
  std::vector<float> decay;
  int64_t covered = 0;
  for (const AdamRange& r : ranges) {
    if (r.end == r.begin) continue;
    begin.push_back(r.begin);
    offset.push_back(covered);
    decay.push_back(static_cast<float>(1.0 - s.lr * r.weight_decay));
    covered += r.end - r.begin;
  }
  if (covered == 0) return;
  const int count = static_cast<int>(begin.size());
  const unsigned blocks = blocks_for(covered, kThreads);
  if (count <= kInlineRanges) {
    InlineRanges t{};
    t.count = count;
    for (int r = 0; r < count; ++r) {
      t.begin[r] = begin[r];
      t.offset[r] = offset[r];
      t.decay[r] = decay[r];
    }
    VC_LAUNCH(adamw_kernel<InlineRanges>, blocks, kThreads, 0)(param, grad, m, v, covered, t, c);
    VC_CHECK_LAUNCH("adamw_kernel (inline ranges)");
  } else {
    const cuda::Scratch dev_begin = cuda::upload(begin.data(), sizeof(int64_t) * begin.size(), "adamw range begins");
    const cuda::Scratch dev_offset = cuda::upload(offset.data(), sizeof(int64_t) * offset.size(), "adamw range offsets");
    const cuda::Scratch dev_decay = cuda::upload(decay.data(), sizeof(float) * decay.size(), "adamw range decays");
    const DeviceRanges t{count, dev_begin.as<int64_t>(), dev_offset.as<int64_t>(), dev_decay.as<float>()};
    VC_LAUNCH(adamw_kernel<DeviceRanges>, blocks, kThreads, 0)(param, grad, m, v, covered, t, c);
    VC_CHECK_LAUNCH("adamw_kernel (uploaded ranges)");
  }
}

double flat_sum_squares_cuda(const float* x, int64_t n) {
  VC_CHECK(n >= 0, "flat_sum_squares_cuda: negative element count " << n);
  if (n == 0) return 0.0;
  const unsigned blocks = std::min<unsigned>(blocks_for(n, kReduceThreads), kMaxReduceBlocks);
  cuda::Scratch partials(sizeof(double) * (static_cast<size_t>(blocks) + 1), "flat_sum_squares partial sums");
  double* out = partials.as<double>() + blocks;
  VC_LAUNCH(sum_squares_partial_kernel, blocks, kReduceThreads, 0)(x, n, partials.as<double>());
  VC_CHECK_LAUNCH("sum_squares_partial_kernel");
  VC_LAUNCH(sum_final_kernel, 1, kReduceThreads, 0)(partials.as<double>(), static_cast<int>(blocks), out);
  VC_CHECK_LAUNCH("sum_final_kernel");
  double host = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&host, out, sizeof(host), cudaMemcpyDeviceToHost, cuda::compute_stream()));
  cuda::wait_for_stream();
  return host;
}

void flat_scale_cuda(float* x, int64_t n, double s) {
  VC_CHECK(n >= 0, "flat_scale_cuda: negative element count " << n);
  if (n == 0) return;
  VC_LAUNCH(scale_kernel, blocks_for(n, kThreads), kThreads, 0)(x, n, static_cast<float>(s));
  VC_CHECK_LAUNCH("scale_kernel");
}

void flat_zero_cuda(float* x, int64_t n) {
  VC_CHECK(n >= 0, "flat_zero_cuda: negative element count " << n);
  if (n == 0) return;
  CUDA_CHECK(cudaMemsetAsync(x, 0, sizeof(float) * static_cast<size_t>(n), cuda::compute_stream()));
}

}  // namespace vitscuda::kernels
