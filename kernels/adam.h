// AdamW over flat buffers (parameters, gradients and both moments laid out alike), in one
// pass, plus the flat-buffer reductions and updates a training step needs around it
// (global gradient norm, scaling, zeroing).
//
// The update reproduces torch.optim.AdamW (single-tensor path, amsgrad=False,
// maximize=False) operation by operation: the step scalars are computed in double as
// Python floats are, converted to the buffer's type, and applied elementwise in the same
// order and with the same fused multiply-adds as ATen's CPU kernels.
#pragma once
#include <cstdint>
#include <vector>

namespace vitscuda::kernels {

// A range [begin, end) of the flat buffers that the optimizer updates, with its weight
// decay (a torch parameter group). Elements in no range are left untouched (frozen).
struct AdamRange {
  int64_t begin = 0;
  int64_t end = 0;
  double weight_decay = 0.0;
};

// Per-step scalars, as torch computes them from the hyper-parameters (all in double).
struct AdamStepScalars {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  int64_t step = 1;  // 1 for the first update (torch increments state["step"] before using it)
  // Multiplies the gradient before the update: the inverse loss scale (1 in fp32 training)...
  double grad_scale = 1.0;
  // ...and then the clipping coefficient (1 when not clipping), as two separate roundings,
  // exactly like GradScaler.unscale_ followed by clip_grad_norm_.
  double clip_coef = 1.0;
};

// One AdamW update of the elements covered by `ranges` (sorted, non-overlapping, within
// [0, n)): param, m (exp_avg) and v (exp_avg_sq) are updated in place, grad is only read.
// Per element, with g = (grad * grad_scale) * clip_coef:
//   param *= 1 - lr * weight_decay            (skipped when weight_decay == 0)
//   m = lerp(m, g, 1 - beta1)
//   v = v * beta2 + (1 - beta2) * g * g
//   param += -(lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
template <typename T>
void adamw_update_cpu(T* param, const T* grad, T* m, T* v, int64_t n, const std::vector<AdamRange>& ranges,
                      const AdamStepScalars& scalars);

// The two-group form: [0, boundary) with `weight_decay`, [boundary, n) without.
template <typename T>
void adamw_update_cpu(T* param, const T* grad, T* m, T* v, int64_t n, int64_t boundary, double weight_decay,
                      const AdamStepScalars& scalars);

// Sum of x[i]^2 over [0, n), accumulated in double (the square of the global L2 norm), in fixed
// chunks added in order: the same bits for any number of threads.
template <typename T>
double flat_sum_squares_cpu(const T* x, int64_t n);

// x[i] *= T(s) over [0, n).
template <typename T>
void flat_scale_cpu(T* x, int64_t n, double s);

// x[i] = 0 over [0, n).
template <typename T>
void flat_zero_cpu(T* x, int64_t n);

// ---------------------------------------------------------------- CUDA (float32, device pointers)
// One kernel launch for all ranges (up to 64 ranges travel in the launch's arguments; more are uploaded,
// which waits for the stream). Per element the operations, their order and their roundings are the
// CPU's (IEEE-rounded __fmul_rn / __fadd_rn / __fdiv_rn / __fsqrt_rn, __fmaf_rn where the CPU calls
// std::fma), so the result is bit-identical to adamw_update_cpu<float>. Same checks and errors.
void adamw_update_cuda(float* param, const float* grad, float* m, float* v, int64_t n,
                       const std::vector<AdamRange>& ranges, const AdamStepScalars& scalars);

// Sum of x[i]^2 in double (exact squares), in a fixed two-stage order: deterministic for a given n.
// Returns to the host (waits for the stream).
double flat_sum_squares_cuda(const float* x, int64_t n);

// x[i] *= float(s) (bit-identical to the CPU).
void flat_scale_cuda(float* x, int64_t n, double s);

// x[i] = 0.
void flat_zero_cuda(float* x, int64_t n);

}  // namespace vitscuda::kernels
