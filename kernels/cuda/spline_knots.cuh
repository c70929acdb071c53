// What the rational-quadratic spline's forward and backward kernels share: the explicitly rounded
// arithmetic, the parameters, and the knot construction. Both must form every knot with the same
// operations in the same order (the backward re-derives the forward's bin), so there is one copy.
// Only .cu files include this.
//
// Exactness: the CPU build rounds every product (x86-64 without FMA), and nvcc would contract
// a * b + c into one fused operation (also with the last step of an inlined expf / logf); the
// knot and bin formulas therefore use the explicitly rounded __fmul_rn / __fadd_rn / __fsub_rn
// wherever a product or a library result meets a sum. Divisions and square roots are IEEE-rounded
// (nvcc's default -prec-div / -prec-sqrt); the knots' cumulative sum runs in double, rounded to
// float at each step.
#pragma once
#include <cmath>

#include "common/error.h"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels::cuda {
namespace {

constexpr double kMinBinWidth = 1e-3, kMinBinHeight = 1e-3, kMinDerivative = 1e-3;

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }

// Per-side constants of the knot construction, formed on the host exactly as the CPU forms them.
struct SideConstants {
  float min_size;       // static_cast<float>(min bin size)
  float free_fraction;  // static_cast<float>(1 - min size * bins), computed in double
};

struct SplineParams {
  int bins;
  float bound;        // static_cast<float>(tail_bound): the knots' range
  double tail_bound;  // the tails test compares in double, as the CPU does
  SideConstants widths, heights;
  float edge_derivative;  // min derivative + softplus(log(e^(1 - min) - 1)): the outer knots' slope
};

// The parameters of `bins` bins on [-tail_bound, tail_bound]; `op` names the caller in errors.
inline SplineParams spline_params(const char* op, int bins, double tail_bound) {
  VC_CHECK(bins >= 1, op << ": need at least one bin, got " << bins);
  VC_CHECK(kMinBinWidth * bins <= 1.0 && kMinBinHeight * bins <= 1.0,
           op << ": minimal bin size 1e-3 too large for " << bins << " bins");
  SplineParams p{};
  p.bins = bins;
  p.bound = static_cast<float>(tail_bound);
  p.tail_bound = tail_bound;
  p.widths = {static_cast<float>(kMinBinWidth), static_cast<float>(1.0 - kMinBinWidth * bins)};
  p.heights = {static_cast<float>(kMinBinHeight), static_cast<float>(1.0 - kMinBinHeight * bins)};
  // The host's libm, as the CPU kernel computes it (float softplus of the float edge value).
  const float edge = static_cast<float>(std::log(std::exp(1.0 - kMinDerivative) - 1.0));
  p.edge_derivative = static_cast<float>(kMinDerivative) + (edge > 20.f ? edge : std::log1p(std::exp(edge)));
  return p;
}

__device__ __forceinline__ float softplus(float x) {
  return x > 20.f ? x : log1pf(expf(x));  // torch: beta 1, threshold 20
}

// The softmax's max and reciprocal sum over one side's unnormalised sizes u, as the CPU forms
// them (max, then the sum of exp(u - max), then the reciprocal); softmax_i = mul(expf(u_i - m), inv).
__device__ __forceinline__ void softmax_stats(const float* u, int bins, float& m, float& inv) {
  m = u[0];
  for (int i = 1; i < bins; ++i) m = m < u[i] ? u[i] : m;  // std::max's choice, NaNs included
  float s = 0.f;
  for (int i = 0; i < bins; ++i) s = add(s, expf(u[i] - m));
  inv = 1.f / s;
}

// Visits the knots 0..bins of one side (widths or heights) of one element, in order, as the CPU
// builds them: min size + free fraction * softmax, a cumulative sum in double rounded to float at
// each step, the affine map onto [-bound, bound], and both ends pinned. visit(i, knot) returns
// false to stop early.
template <typename Visit>
__device__ void walk_knots(const float* u, int bins, float bound, SideConstants side, Visit visit) {
  float m, inv;
  softmax_stats(u, bins, m, inv);
  if (!visit(0, -bound)) return;
  const float span = bound + bound;
  double acc = 0.0;
  for (int i = 0; i < bins; ++i) {
    const float soft = mul(expf(u[i] - m), inv);
    acc += static_cast<double>(add(side.min_size, mul(side.free_fraction, soft)));
    const float knot = i + 1 == bins ? bound : sub(mul(span, static_cast<float>(acc)), bound);
    if (!visit(i + 1, knot)) return;
  }
}

// Knots k and k + 1 of one side.
__device__ void knot_pair(const float* u, int bins, float bound, SideConstants side, int k, float& lo, float& hi) {
  walk_knots(u, bins, bound, side, [&](int i, float knot) {
    if (i == k) lo = knot;
    if (i == k + 1) hi = knot;
    return i <= k;
  });
}

// The derivative at knot i: the fixed edge slope at both ends, else min + softplus(ud[i - 1]).
__device__ float knot_derivative(const float* ud, int bins, float edge, int i) {
  return i == 0 || i == bins ? edge : add(static_cast<float>(kMinDerivative), softplus(ud[i - 1]));
}

// The bin of one element and the seven scalars its formula reads.
struct Bin {
  int k;
  float cumwidth, width, cumheight, height, deriv0, deriv1;
};

// The bin x falls in (torch.searchsorted as transformers writes it: count the knots <= x, the last
// one nudged up by 1e-6 so that x == bound falls into the last bin; over the heights in reverse),
// from the element's unnormalised widths w, heights h [bins] and derivatives d [bins - 1].
__device__ __forceinline__ Bin find_bin(float x, const float* w, const float* h, const float* d, const SplineParams& p,
                                        bool reverse) {
  int count = 0;
  walk_knots(reverse ? h : w, p.bins, p.bound, reverse ? p.heights : p.widths, [&](int i, float knot) {
    const float l = i == p.bins ? knot + 1e-6f : knot;
    if (x >= l) ++count;
    return true;
  });
  const int k = min(max(count - 1, 0), p.bins - 1);
  float cumw0, cumw1, cumh0, cumh1;
  knot_pair(w, p.bins, p.bound, p.widths, k, cumw0, cumw1);
  knot_pair(h, p.bins, p.bound, p.heights, k, cumh0, cumh1);
  return Bin{k,
             cumw0,
             cumw1 - cumw0,
             cumh0,
             cumh1 - cumh0,
             knot_derivative(d, p.bins, p.edge_derivative, k),
             knot_derivative(d, p.bins, p.edge_derivative, k + 1)};
}

}  // namespace
}  // namespace vitscuda::kernels::cuda
