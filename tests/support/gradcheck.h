// Gradient checks: numeric gradients by central differences in double precision (the one
// implementation every gradient check of the repository uses) and the check of an engine op's
// tape gradients against them.
//
// The loss is L = sum(y * r) with a fixed random r, never a plain sum: a plain sum makes the
// gradient through a softmax or a mean-subtracting norm identically zero, so a wrong backward
// would pass. Step h = 1e-6; the accepted relative error max|numeric - analytic| / max|analytic|
// is 1e-6. Why that holds with margin: for the linear ops (convolutions, products, gathers) the
// central difference has no truncation error, only the rounding of L, about 1e-16 * |L| / h ~ 1e-9
// for |L| ~ 10; for the smooth nonlinear ops of O(1) inputs the truncation error h^2/6 * |L'''| is
// ~1e-13. A wrong index, a missing term or a wrong sign gives errors of order 1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::testing {

constexpr double kGradcheckStep = 1e-6;
constexpr double kGradcheckTolerance = 1e-6;

// d loss / d values[i] for i in [0, n) by central differences: each value is moved by +h and -h in
// place, loss() evaluated, and the value restored.
std::vector<double> numeric_gradient(double* values, size_t n, const std::function<double()>& loss,
                                     double h = kGradcheckStep);
inline std::vector<double> numeric_gradient(std::vector<double>* values, const std::function<double()>& loss,
                                            double h = kGradcheckStep) {
  return numeric_gradient(values->data(), values->size(), loss, h);
}
// Only at `coordinates` (large inputs: a sample of their elements); element k of the result belongs
// to coordinates[k].
std::vector<double> numeric_gradient_at(double* values, const std::vector<size_t>& coordinates,
                                        const std::function<double()>& loss, double h = kGradcheckStep);
// The same for an f64 CPU tensor, returned as an f64 tensor of its shape.
Tensor numeric_gradient(Tensor& values, const std::function<double()>& loss, double h = kGradcheckStep);

// max|a - b| / max(max|b|, floor) (max|a - b| when that is 0); shapes must match, either tensor may
// be f32 or f64. 1e300 for a shape mismatch.
double relative_max_error(const Tensor& a, const Tensor& b, double floor = 0.0);

// sum(y * r) in double precision (CPU tensors of any dtype).
double weighted_sum_value(const Tensor& y, const Tensor& r);
// sum(y * r) as a [1, 1] tensor on the tape: ops::linear of the flattened y with r as a one-row
// weight, so the loss goes through no elementwise op that might be the one under test.
Tensor weighted_sum(const Tensor& y, const Tensor& r);

// Gives `t` (sharing its storage) a fresh gradient slot on its device: a leaf whose gradient the
// tape accumulates.
Tensor requiring_grad(Tensor t);
// The gradient accumulated for a leaf (undefined when none arrived).
Tensor grad_of(const Tensor& leaf);

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct InputGradcheck {
  bool checked = false;  // false for inputs not marked differentiable
  Tensor analytic;       // the tape's gradient (undefined: the input got none)
  Tensor numeric;        // central differences of L
  double error = 1e300;  // relative_max_error(analytic, numeric)
};

// The tape's gradients of L = sum(f(inputs) * r) (r: standard normal from `r_seed`) against central
// differences, for every input with differentiable[i] (all when the vector is empty). Inputs are f64
// CPU tensors; they are left unchanged. Throws when f's output does not require a gradient although
// some input does.
std::vector<InputGradcheck> gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                                      const std::vector<bool>& differentiable = {}, uint32_t r_seed = 99);

}  // namespace vitscuda::testing
