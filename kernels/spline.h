// Rational-quadratic spline (Durkan et al.), as transformers' VITS duration predictor uses it:
// linear tails outside [-tail_bound, tail_bound], min bin width/height/derivative 1e-3.
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// inputs [n]; widths, heights [n, bins]; derivatives [n, bins - 1] (unnormalised).
// outputs [n], log_abs_det [n] (negated in reverse, as transformers returns it).
template <typename T>
void rational_quadratic_spline_forward_cpu(const T* inputs, const T* widths, const T* heights, const T* derivatives,
                                           T* outputs, T* log_abs_det, int64_t n, int bins, bool reverse,
                                           double tail_bound);

}  // namespace vitscuda::kernels
