// CUDA rational-quadratic spline backward (either direction), one thread per element, porting the
// CPU backward operation for operation: forward-mode dual numbers over the seven scalars one bin's
// formula reads (input, cumwidth, width, cumheight, height, left and right derivative) carried
// through the forward's exact operations (the reverse root included), then back through the knot
// construction (pinned ends, cumulative sum, min-size map, softmax) and the softplus.
//
// The knots and the rounding come from spline_knots.cuh, as in the forward, so the bin is the one
// the CUDA forward picked, and the result differs from the CPU only through expf / logf / log1pf
// against the host's libm (an ulp or two).
//
// No per-thread arrays: the knots and softmax values are recomputed by streaming over the
// element's unnormalised sizes (same operations, same order, bit-identical values); each
// element's rows of d_widths / d_heights / d_derivatives belong to its thread alone (no atomics).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/spline_knots.cuh"
#include "kernels/spline.h"

namespace vitscuda::kernels {

namespace {

using cuda::add;
using cuda::Bin;
using cuda::find_bin;
using cuda::mul;
using cuda::SideConstants;
using cuda::softmax_stats;
using cuda::SplineParams;
using cuda::sub;

__device__ __forceinline__ float softplus_grad(float x) {
  return x > 20.f ? 1.f : 1.f / add(1.f, expf(-x));
}

// ---------------------------------------------------------------- dual numbers
constexpr int kLocals = 7;
enum Local { kX, kCumWidth, kWidth, kCumHeight, kHeight, kDeriv0, kDeriv1 };

struct Dual {
  float v;
  float d[kLocals];
};

__device__ __forceinline__ Dual constant(float value) {
  Dual r;
  r.v = value;
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = 0.f;
  return r;
}
__device__ __forceinline__ Dual variable(float value, int index) {
  Dual r = constant(value);
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = i == index ? 1.f : 0.f;
  return r;
}
__device__ __forceinline__ Dual operator+(const Dual& a, const Dual& b) {
  Dual r;
  r.v = add(a.v, b.v);
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = add(a.d[i], b.d[i]);
  return r;
}
__device__ __forceinline__ Dual operator-(const Dual& a, const Dual& b) {
  Dual r;
  r.v = sub(a.v, b.v);
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = sub(a.d[i], b.d[i]);
  return r;
}
__device__ __forceinline__ Dual operator-(const Dual& a) {
  Dual r;
  r.v = -a.v;
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = -a.d[i];
  return r;
}
__device__ __forceinline__ Dual operator*(const Dual& a, const Dual& b) {
  Dual r;
  r.v = mul(a.v, b.v);
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = add(mul(a.d[i], b.v), mul(a.v, b.d[i]));
  return r;
}
__device__ __forceinline__ Dual operator/(const Dual& a, const Dual& b) {
  Dual r;
  r.v = a.v / b.v;
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = sub(a.d[i], mul(r.v, b.d[i])) / b.v;
  return r;
}
__device__ __forceinline__ Dual dual_sqrt(const Dual& a) {
  Dual r;
  r.v = sqrtf(a.v);
  const float two_root = mul(2.f, r.v);
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] / two_root;
  return r;
}
__device__ __forceinline__ Dual dual_log(const Dual& a) {
  Dual r;
  r.v = logf(a.v);
#pragma unroll
  for (int i = 0; i < kLocals; ++i) r.d[i] = a.d[i] / a.v;
  return r;
}

// One bin of the spline as the CPU's evaluate_bin<float, Dual<float>>, operation for operation
// (constants are duals with zero derivatives, as the CPU's S(C(2)) are).
__device__ void evaluate_bin_dual(const Dual& x, const Dual& cumwidth, const Dual& width, const Dual& cumheight,
                                  const Dual& height, const Dual& deriv0, const Dual& deriv1, bool reverse, Dual& y,
                                  Dual& log_abs_det) {
  const Dual one = constant(1.f), two = constant(2.f);
  const Dual delta = height / width;
  const Dual i1 = deriv0 + deriv1 - two * delta;
  if (!reverse) {
    const Dual theta = (x - cumwidth) / width;
    const Dual tt = theta * (one - theta);
    const Dual numerator = height * (delta * (theta * theta) + deriv0 * tt);
    const Dual denominator = delta + i1 * tt;
    y = cumheight + numerator / denominator;
    const Dual one_minus = one - theta;
    const Dual dnum = (delta * delta) * (deriv1 * (theta * theta) + two * delta * tt + deriv0 * (one_minus * one_minus));
    log_abs_det = dual_log(dnum) - two * dual_log(denominator);
    return;
  }
  const Dual i2 = x - cumheight;
  const Dual i3 = i2 * i1;
  const Dual a = height * (delta - deriv0) + i3;
  const Dual b = height * deriv0 - i3;
  const Dual c = -delta * i2;
  const Dual disc = b * b - constant(4.f) * a * c;
  // A negative discriminant is not checked here (the CPU backward does not either): NaNs propagate.
  const Dual root = (two * c) / (-b - dual_sqrt(disc));
  y = root * width + cumwidth;
  const Dual tt = root * (one - root);
  const Dual denominator = delta + i1 * tt;
  const Dual one_minus = one - root;
  const Dual dnum = (delta * delta) * (deriv1 * (root * root) + two * delta * tt + deriv0 * (one_minus * one_minus));
  log_abs_det = -(dual_log(dnum) - two * dual_log(denominator));
}

// The CPU's Spline::knots_backward: accumulates into du [bins] the gradient with respect to one
// side's unnormalised sizes u, given the gradients g0, g1 of knots `bin` and `bin + 1`.
//   knot_i = 2B * cumsum_i - B for 0 < i < bins (knots 0 and bins pinned): g_cum(i)
//   dL/dsize_j = sum_{i > j} g_cum(i) (suffix), g_soft_j = free_fraction * suffix_j,
//   du_j += soft_j * (g_soft_j - sum_l g_soft_l soft_l).
// The CPU forms the suffix as a running sum from j = bins - 1 down; only g_cum(bin) and
// g_cum(bin + 1) can be non-zero, the others being zeros (span * 0 inside, 0 at the ends), so the
// running sum takes four values: +0 above bin, s_bin = 0 + g_cum(bin + 1) at bin,
// s_below = s_bin + g_cum(bin) just below, then s_below + (span * 0) further down (adding a zero
// changes at most the sign of a zero, and only the first time). suffix_at reproduces them
// exactly, so the ascending pass needs no array.
__device__ void knots_backward(const float* u, int bins, float bound, SideConstants side, int bin, float g0, float g1,
                               float* du) {
  const float span = bound + bound;
  auto g_cum = [&](int i) -> float {
    if (i <= 0 || i >= bins) return 0.f;
    return mul(span, i == bin ? g0 : i == bin + 1 ? g1 : 0.f);
  };
  const float s_bin = add(0.f, g_cum(bin + 1));
  const float s_below = add(s_bin, g_cum(bin));
  const float s_rest = add(s_below, mul(span, 0.f));
  auto suffix_at = [&](int j) -> float { return j > bin ? 0.f : j == bin ? s_bin : j == bin - 1 ? s_below : s_rest; };

  float m, inv;
  softmax_stats(u, bins, m, inv);
  const float scale = side.free_fraction;
  float dot = 0.f;
  for (int j = bins - 1; j >= 0; --j) dot = add(dot, mul(mul(scale, suffix_at(j)), mul(expf(u[j] - m), inv)));
  for (int j = 0; j < bins; ++j) {
    const float soft = mul(expf(u[j] - m), inv);
    du[j] = add(du[j], mul(soft, sub(mul(scale, suffix_at(j)), dot)));
  }
}

__global__ void rational_quadratic_spline_backward_kernel(const float* inputs, const float* uw, const float* uh,
                                                          const float* ud, const float* dy, const float* dlad,
                                                          float* dx, float* duw, float* duh, float* dud, int64_t n,
                                                          SplineParams p, bool reverse) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const float x = inputs[e];
    const float gy = dy ? dy[e] : 0.f, gl = dlad ? dlad[e] : 0.f;
    const double xd = x;
    if (!(xd >= -p.tail_bound && xd <= p.tail_bound)) {  // tails (and NaN): identity, log|det| 0
      if (dx) dx[e] = add(dx[e], gy);
      continue;
    }
    const float* w = uw + e * p.bins;
    const float* h = uh + e * p.bins;
    const float* d = ud + e * (p.bins - 1);

    const Bin b = find_bin(x, w, h, d, p, reverse);  // the forward's bin
    const int k = b.k;
    Dual y, lad;
    evaluate_bin_dual(variable(x, kX), variable(b.cumwidth, kCumWidth), variable(b.width, kWidth),
                      variable(b.cumheight, kCumHeight), variable(b.height, kHeight), variable(b.deriv0, kDeriv0),
                      variable(b.deriv1, kDeriv1), reverse, y, lad);
    float g[kLocals];
#pragma unroll
    for (int i = 0; i < kLocals; ++i) g[i] = add(mul(gy, y.d[i]), mul(gl, lad.d[i]));

    if (dx) dx[e] = add(dx[e], g[kX]);
    // width_k = knot_{k+1} - knot_k, cumwidth_k = knot_k (heights alike).
    if (duw)
      knots_backward(w, p.bins, p.bound, p.widths, k, sub(g[kCumWidth], g[kWidth]), g[kWidth], duw + e * p.bins);
    if (duh)
      knots_backward(h, p.bins, p.bound, p.heights, k, sub(g[kCumHeight], g[kHeight]), g[kHeight], duh + e * p.bins);
    // Knot derivatives 1 .. bins-1 come from the inputs; 0 and bins are constants.
    if (dud) {
      float* dd = dud + e * (p.bins - 1);
      if (k >= 1) dd[k - 1] = add(dd[k - 1], mul(g[kDeriv0], softplus_grad(d[k - 1])));
      if (k + 1 <= p.bins - 1) dd[k] = add(dd[k], mul(g[kDeriv1], softplus_grad(d[k])));
    }
  }
}

}  // namespace

void rational_quadratic_spline_backward_cuda(const float* inputs, const float* widths, const float* heights,
                                             const float* derivatives, const float* d_outputs,
                                             const float* d_log_abs_det, float* d_inputs, float* d_widths,
                                             float* d_heights, float* d_derivatives, int64_t n, int bins, bool reverse,
                                             double tail_bound) {
  const SplineParams p = cuda::spline_params("rational_quadratic_spline backward", bins, tail_bound);
  if (n <= 0 || !(d_inputs || d_widths || d_heights || d_derivatives)) return;

  VC_LAUNCH(rational_quadratic_spline_backward_kernel, cuda::blocks_for(n, 256), 256, 0)
  (inputs, widths, heights, derivatives, d_outputs, d_log_abs_det, d_inputs, d_widths, d_heights, d_derivatives, n, p,
   reverse);
  VC_CHECK_LAUNCH("rational_quadratic_spline_backward_kernel");
}

}  // namespace vitscuda::kernels
