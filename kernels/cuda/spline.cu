// CUDA rational-quadratic spline forward (either direction), one thread per element, porting
// the CPU kernel operation for operation, with the rounding of spline_knots.cuh. What still
// differs is expf / logf / log1pf against the host's libm (an ulp or two), so the searchsorted bin
// and the sign of the reverse discriminant can differ from the CPU's only within a few ulps of a
// knot or of zero.
//
// No per-thread knot arrays: a thread streams over its element's unnormalised sizes, once to
// count the knots at or below x and once per side to pick up knots k and k + 1 of the chosen
// bin k. Recomputed knots are bit-identical (same operations, same order), registers suffice
// for any number of bins, and the rows (bins floats each) are re-read from L1.
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
using cuda::SplineParams;
using cuda::sub;

// The first-invalid slot starts as bytes 0x7f: a value above any element index.
constexpr long long kNoInvalid = 0x7f7f7f7f7f7f7f7fLL;

// One bin of the spline, as the CPU's evaluate_bin<float, float>. Returns false on a negative
// (or NaN) discriminant in reverse; y and log_abs_det are computed regardless.
__device__ bool evaluate_bin(float x, float cumwidth, float width, float cumheight, float height, float deriv0,
                             float deriv1, bool reverse, float& y, float& log_abs_det) {
  const float delta = height / width;
  const float i1 = sub(add(deriv0, deriv1), mul(2.f, delta));
  if (!reverse) {
    const float theta = (x - cumwidth) / width;
    const float tt = mul(theta, 1.f - theta);
    const float numerator = mul(height, add(mul(delta, mul(theta, theta)), mul(deriv0, tt)));
    const float denominator = add(delta, mul(i1, tt));
    y = add(cumheight, numerator / denominator);
    const float one_minus = 1.f - theta;
    const float dnum = mul(mul(delta, delta), add(add(mul(deriv1, mul(theta, theta)), mul(mul(2.f, delta), tt)),
                                                  mul(deriv0, mul(one_minus, one_minus))));
    log_abs_det = sub(logf(dnum), mul(2.f, logf(denominator)));
    return true;
  }
  const float i2 = x - cumheight;
  const float i3 = mul(i2, i1);
  const float a = add(mul(height, delta - deriv0), i3);
  const float b = sub(mul(height, deriv0), i3);
  const float c = mul(-delta, i2);
  const float disc = sub(mul(b, b), mul(mul(4.f, a), c));
  const bool valid = disc >= 0.f;
  const float root = mul(2.f, c) / sub(-b, sqrtf(disc));
  y = add(mul(root, width), cumwidth);
  const float tt = mul(root, 1.f - root);
  const float denominator = add(delta, mul(i1, tt));
  const float one_minus = 1.f - root;
  const float dnum = mul(mul(delta, delta), add(add(mul(deriv1, mul(root, root)), mul(mul(2.f, delta), tt)),
                                                mul(deriv0, mul(one_minus, one_minus))));
  log_abs_det = -sub(logf(dnum), mul(2.f, logf(denominator)));
  return valid;
}

__global__ void rational_quadratic_spline_kernel(const float* inputs, const float* uw, const float* uh,
                                                 const float* ud, float* outputs, float* log_abs_det, int64_t n,
                                                 SplineParams p, bool reverse, long long* first_invalid) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const float x = inputs[e];
    const double xd = x;
    if (!(xd >= -p.tail_bound && xd <= p.tail_bound)) {  // tails (and NaN) pass through
      outputs[e] = x;
      log_abs_det[e] = 0.f;
      continue;
    }
    const float* w = uw + e * p.bins;
    const float* h = uh + e * p.bins;
    const float* d = ud + e * (p.bins - 1);

    const Bin b = find_bin(x, w, h, d, p, reverse);
    float y, lad;
    const bool ok =
        evaluate_bin(x, b.cumwidth, b.width, b.cumheight, b.height, b.deriv0, b.deriv1, reverse, y, lad);
    if (!ok) atomicMin(first_invalid, static_cast<long long>(e));
    outputs[e] = y;
    log_abs_det[e] = lad;
  }
}

}  // namespace

void rational_quadratic_spline_forward_cuda(const float* inputs, const float* widths, const float* heights,
                                            const float* derivatives, float* outputs, float* log_abs_det, int64_t n,
                                            int bins, bool reverse, double tail_bound) {
  const SplineParams p = cuda::spline_params("rational_quadratic_spline", bins, tail_bound);
  if (n <= 0) return;

  // Only the reverse pass can fail; the forward needs no flag and no synchronisation.
  cuda::Scratch flag(reverse ? sizeof(long long) : 0, "rational_quadratic_spline first invalid element");
  long long* first_invalid = flag.as<long long>();
  if (reverse) CUDA_CHECK(cudaMemsetAsync(first_invalid, 0x7f, sizeof(long long), cuda::compute_stream()));

  VC_LAUNCH(rational_quadratic_spline_kernel, cuda::blocks_for(n, 256), 256, 0)
  (inputs, widths, heights, derivatives, outputs, log_abs_det, n, p, reverse, first_invalid);
  VC_CHECK_LAUNCH("rational_quadratic_spline_kernel");
  if (!reverse) return;

  long long invalid = kNoInvalid;
  CUDA_CHECK(cudaMemcpyAsync(&invalid, first_invalid, sizeof(invalid), cudaMemcpyDeviceToHost, cuda::compute_stream()));
  cuda::wait_for_stream();
  if (invalid == kNoInvalid) return;
  float input = 0.f;
  CUDA_CHECK(cudaMemcpyAsync(&input, inputs + invalid, sizeof(input), cudaMemcpyDeviceToHost, cuda::compute_stream()));
  cuda::wait_for_stream();
  VC_FAIL("rational_quadratic_spline: negative discriminant in the reverse pass at element "
          << invalid << " (input " << input << "): invalid spline parameters");
}

}  // namespace vitscuda::kernels
