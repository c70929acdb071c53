#include "support/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "support/test_support.h"

namespace vitscuda::testing {

std::vector<double> numeric_gradient_at(double* values, const std::vector<size_t>& coordinates,
                                        const std::function<double()>& loss, double h) {
  std::vector<double> grad(coordinates.size());
  for (size_t k = 0; k < coordinates.size(); ++k) {
    double& v = values[coordinates[k]];
    const double saved = v;
    v = saved + h;
    const double plus = loss();
    v = saved - h;
    const double minus = loss();
    v = saved;
    grad[k] = (plus - minus) / (2 * h);
  }
  return grad;
}

std::vector<double> numeric_gradient(double* values, size_t n, const std::function<double()>& loss, double h) {
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  return numeric_gradient_at(values, all, loss, h);
}

Tensor numeric_gradient(Tensor& values, const std::function<double()>& loss, double h) {
  VC_CHECK(values.dtype() == DType::F64 && values.device() == Device::CPU,
           "numeric_gradient needs an f64 CPU tensor, got " << values.describe());
  return Tensor::from_vector(numeric_gradient(values.data<double>(), static_cast<size_t>(values.numel()), loss, h),
                             values.shape());
}

double relative_max_error(const Tensor& a, const Tensor& b, double floor) {
  if (a.shape() != b.shape()) return 1e300;
  const Tensor bd = b.to(Device::CPU).to(DType::F64);
  double den = floor;
  for (int64_t i = 0; i < bd.numel(); ++i) den = std::max(den, std::fabs(bd.data<double>()[i]));
  const double diff = max_abs_diff(a, b);
  return den > 0.0 ? diff / den : diff;
}

double weighted_sum_value(const Tensor& y, const Tensor& r) {
  VC_CHECK(y.numel() == r.numel(), "weighted_sum_value: " << y.describe() << " vs " << r.describe());
  const Tensor yd = y.to(Device::CPU).to(DType::F64), rd = r.to(Device::CPU).to(DType::F64);
  double s = 0.0;
  for (int64_t i = 0; i < yd.numel(); ++i) s += yd.data<double>()[i] * rd.data<double>()[i];
  return s;
}

Tensor weighted_sum(const Tensor& y, const Tensor& r) {
  return ops::linear(y.reshape({1, y.numel()}), r.reshape({1, r.numel()}), Tensor());
}

Tensor requiring_grad(Tensor t) {
  auto slot = std::make_shared<autograd::GradSlot>();
  slot->shape = t.shape();
  slot->dtype = t.dtype();
  slot->device = t.device();
  t.set_grad_slot(slot);
  return t;
}

Tensor grad_of(const Tensor& leaf) { return leaf.grad_slot() ? leaf.grad_slot()->grad : Tensor(); }

std::vector<InputGradcheck> gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs,
                                      const std::vector<bool>& differentiable, uint32_t r_seed) {
  VC_CHECK(differentiable.empty() || differentiable.size() == inputs.size(),
           "gradcheck: " << differentiable.size() << " differentiable flags for " << inputs.size() << " inputs");
  auto wanted = [&](size_t i) { return inputs[i].defined() && (differentiable.empty() || differentiable[i]); };
  std::vector<Tensor> values;  // private copies: the central differences perturb them in place
  for (const Tensor& t : inputs) {
    VC_CHECK(!t.defined() || (t.dtype() == DType::F64 && t.device() == Device::CPU),
             "gradcheck needs f64 CPU inputs, got " << t.describe());
    values.push_back(t.defined() ? t.clone() : Tensor());
  }
  const Tensor r = normal_tensor(f(values).shape(), r_seed);

  std::vector<Tensor> leaves;
  bool any = false;
  for (size_t i = 0; i < values.size(); ++i) {
    leaves.push_back(wanted(i) ? requiring_grad(values[i].clone()) : values[i]);
    any = any || wanted(i);
  }
  {
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    const Tensor y = f(leaves);
    VC_CHECK(!any || y.requires_grad(), "gradcheck: the output " << y.describe() << " needs no gradient although "
                                                                    "some input does (the op recorded nothing)");
    if (any) tape.backward(weighted_sum(y, r));
  }
  std::vector<InputGradcheck> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (!wanted(i)) continue;
    out[i].checked = true;
    out[i].analytic = grad_of(leaves[i]);
    out[i].numeric = numeric_gradient(values[i], [&] { return weighted_sum_value(f(values), r); });
    if (out[i].analytic.defined()) out[i].error = relative_max_error(out[i].analytic, out[i].numeric);
  }
  return out;
}

}  // namespace vitscuda::testing
