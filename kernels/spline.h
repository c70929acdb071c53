// Rational-quadratic spline (Durkan et al.), as transformers' VITS duration predictor uses it:
// linear tails outside [-tail_bound, tail_bound], min bin width/height/derivative 1e-3.
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// inputs [n]; widths, heights [n, bins]; derivatives [n, bins - 1] (unnormalised).
// outputs [n], log_abs_det [n] (negated in reverse, as transformers returns it).
// Inputs outside [-tail_bound, tail_bound] pass through with log_abs_det 0. Throws if a reverse
// evaluation meets a negative discriminant (transformers raises there too).
template <typename T>
void rational_quadratic_spline_forward_cpu(const T* inputs, const T* widths, const T* heights, const T* derivatives,
                                           T* outputs, T* log_abs_det, int64_t n, int bins, bool reverse,
                                           double tail_bound);

// Gradients of a loss through the spline, given d_outputs and d_log_abs_det [n] (either may be
// nullptr for a zero gradient). ACCUMULATES (+=) into d_inputs [n], d_widths, d_heights
// [n, bins] and d_derivatives [n, bins - 1]; any of them may be nullptr. Same direction
// (reverse or not) and arguments as the forward call.
template <typename T>
void rational_quadratic_spline_backward_cpu(const T* inputs, const T* widths, const T* heights, const T* derivatives,
                                            const T* d_outputs, const T* d_log_abs_det, T* d_inputs, T* d_widths,
                                            T* d_heights, T* d_derivatives, int64_t n, int bins, bool reverse,
                                            double tail_bound);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
void rational_quadratic_spline_forward_cuda(const float* inputs, const float* widths, const float* heights,
                                            const float* derivatives, float* outputs, float* log_abs_det, int64_t n,
                                            int bins, bool reverse, double tail_bound);
// Backward (same arguments as the CPU backward; gradients ACCUMULATE, any may be nullptr), one
// thread per element; every output row belongs to one element, so no atomics.
void rational_quadratic_spline_backward_cuda(const float* inputs, const float* widths, const float* heights,
                                             const float* derivatives, const float* d_outputs,
                                             const float* d_log_abs_det, float* d_inputs, float* d_widths,
                                             float* d_heights, float* d_derivatives, int64_t n, int bins, bool reverse,
                                             double tail_bound);

}  // namespace vitscuda::kernels
