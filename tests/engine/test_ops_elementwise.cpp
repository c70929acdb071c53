// Op-level tests of the pointwise, layout, softmax, attention and spline ops (engine/ops_elementwise.cpp):
// forwards against naive loops (f64 and f32), tape gradients against central differences in f64,
// relative_attention inside transformers' VitsAttention (tests/data/kernels/attention_cases.txt,
// written by tools/golden/make_kernel_cases_attention.py) and rational_quadratic_spline against
// transformers' function (tests/data/kernels/spline_cases.txt), operand checks and their messages.
//
// Gradient checks use L = sum(y * r) for a fixed random r (a plain sum would give softmax a zero
// gradient), formed with ops::linear so the loss does not go through the ops under test; central
// differences with h = 1e-6 in f64 and relative error max|numeric - analytic| / max|analytic|
// < 1e-6: for these smooth functions of O(1) inputs the truncation error h^2/6 |L'''| is ~1e-13
// and rounding adds ~1e-16 |L| / h ~ 1e-9, while a wrong derivative is off by O(1). Inputs stay
// at least 1e-3 from the kinks of relu / leaky_relu / clamp_min and softplus's threshold.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "support/gradcheck.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

using testing::normal_tensor;

// ------------------------------------------------------------------ helpers

using testing::requiring_grad;
using testing::weighted_sum;

Tensor grad_of(const Tensor& t) {
  EXPECT_TRUE(t.requires_grad());
  return testing::grad_of(t);
}

// Random values at least `gap` away from every point in `kinks`.
Tensor random_away_from(const Shape& shape, uint32_t seed, double scale, const std::vector<double>& kinks,
                        double gap = 1e-3) {
  Tensor t = normal_tensor(shape, seed, scale);
  for (int64_t i = 0; i < t.numel(); ++i) {
    double& x = t.data<double>()[i];
    for (double k : kinks)
      if (std::fabs(x - k) < gap) x = k + (x < k ? -gap : gap);
  }
  return t;
}

std::vector<double> values(const Tensor& t) {
  Tensor d = t.to(DType::F64);
  return std::vector<double>(d.data<double>(), d.data<double>() + d.numel());
}

// max|a - b| / max(max|b|, floor).
double relative_error(const Tensor& a, const Tensor& b, double floor = 0.0) {
  EXPECT_EQ(a.shape(), b.shape()) << a.describe() << " vs " << b.describe();
  if (a.shape() != b.shape()) return 1e300;
  double den = floor;
  for (double v : values(b)) den = std::max(den, std::fabs(v));
  const double diff = testing::max_abs_diff(a, b);
  return den > 0.0 ? diff / den : diff;
}

using vitscuda::testing::error_of;

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// The tape's gradient of L = sum(f(inputs) * r) for every input against central differences
// (support/gradcheck.h). `inputs` are f64.
void check_gradients(const std::string& what, const std::vector<Tensor>& inputs, const OpFn& f, uint32_t seed = 99) {
  SCOPED_TRACE(what);
  const std::vector<testing::InputGradcheck> checks = testing::gradcheck(f, inputs, {}, seed);
  for (size_t k = 0; k < checks.size(); ++k) {
    ASSERT_TRUE(checks[k].analytic.defined()) << "input " << k << " got no gradient";
    EXPECT_LT(checks[k].error, testing::kGradcheckTolerance) << "input " << k;
  }
}

// Element (i0, .., i_{n-1}) of a contiguous f64 tensor.
double at(const Tensor& t, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  for (int d = 0; d < t.ndim(); ++d) off = off * t.dim(d) + idx[d];
  return t.data<double>()[off];
}

// Calls f(index) for every index of `shape` in row-major order.
void for_each_index(const Shape& shape, const std::function<void(const std::vector<int64_t>&)>& f) {
  std::vector<int64_t> idx(shape.size(), 0);
  const int64_t n = shape_numel(shape);
  for (int64_t i = 0; i < n; ++i) {
    f(idx);
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// ------------------------------------------------------------------ unary ops

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> reference;
  std::vector<double> kinks;  // points to keep inputs away from
  double scale = 2.0;
  bool positive = false;  // inputs must be > 0 (log)
};

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<UnaryCase> unary_cases() {
  const double pi = 3.14159265358979323846;
  return {
      {"relu", [](const Tensor& x) { return ops::relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, {0.0}},
      {"leaky_relu", [](const Tensor& x) { return ops::leaky_relu(x, 0.1); },
       [](double x) { return x > 0 ? x : 0.1 * x; }, {0.0}},
      {"gelu", [](const Tensor& x) { return ops::gelu(x); },
       [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }, {}},
      {"gelu_new", [](const Tensor& x) { return ops::activation(x, "gelu_new"); },
       [pi](double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / pi) * (x + 0.044715 * x * x * x))); }, {}},
      {"silu", [](const Tensor& x) { return ops::activation(x, "silu"); }, [](double x) { return x * sigmoid_ref(x); },
       {}},
      {"swish", [](const Tensor& x) { return ops::activation(x, "swish"); }, [](double x) { return x * sigmoid_ref(x); },
       {}},
      {"tanh", [](const Tensor& x) { return ops::tanh(x); }, [](double x) { return std::tanh(x); }, {}},
      {"sigmoid", [](const Tensor& x) { return ops::sigmoid(x); }, sigmoid_ref, {}},
      {"exp", [](const Tensor& x) { return ops::exp(x); }, [](double x) { return std::exp(x); }, {}},
      {"log", [](const Tensor& x) { return ops::log(x); }, [](double x) { return std::log(x); }, {}, 2.0, true},
      // Scale 15: some inputs beyond softplus's threshold 20, where it returns x itself.
      {"softplus", [](const Tensor& x) { return ops::softplus(x); },
       [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); }, {20.0}, 15.0},
      {"clamp_min", [](const Tensor& x) { return ops::clamp_min(x, 0.3); },
       [](double x) { return std::max(x, 0.3); }, {0.3}},
      {"scale", [](const Tensor& x) { return ops::scale(x, -2.5); }, [](double x) { return -2.5 * x; }, {}},
      {"add_scalar", [](const Tensor& x) { return ops::add_scalar(x, 0.7); }, [](double x) { return x + 0.7; }, {}},
      {"activation relu", [](const Tensor& x) { return ops::activation(x, "relu"); },
       [](double x) { return x > 0 ? x : 0.0; }, {0.0}},
      {"activation gelu", [](const Tensor& x) { return ops::activation(x, "gelu"); },
       [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }, {}},
      {"activation tanh", [](const Tensor& x) { return ops::activation(x, "tanh"); },
       [](double x) { return std::tanh(x); }, {}},
      {"activation sigmoid", [](const Tensor& x) { return ops::activation(x, "sigmoid"); }, sigmoid_ref, {}},
  };
}

Tensor unary_input(const UnaryCase& c, const Shape& shape, uint32_t seed) {
  Tensor x = random_away_from(shape, seed, c.scale, c.kinks);
  if (c.positive)
    for (int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = std::fabs(x.data<double>()[i]) + 0.05;
  return x;
}

TEST(OpsElementwise, UnaryForwardsMatchTheirDefinitions) {
  for (const UnaryCase& c : unary_cases()) {
    SCOPED_TRACE(c.name);
    // 40000 elements: above the kernels' threshold for running in parallel.
    for (const Shape& shape : {Shape{2, 3, 5}, Shape{4, 100, 100}}) {
      const Tensor x = unary_input(c, shape, 7);
      const Tensor y = c.op(x);
      ASSERT_EQ(y.shape(), x.shape());
      ASSERT_EQ(y.dtype(), DType::F64);
      Tensor expected = Tensor::empty(x.shape(), DType::F64);
      for (int64_t i = 0; i < x.numel(); ++i) expected.data<double>()[i] = c.reference(x.data<double>()[i]);
      // The same formula in f64 (library functions to within an ulp or two).
      EXPECT_LT(relative_error(y, expected), 1e-14);
      // f32: inputs rounded to float (relative 6e-8) and float arithmetic; exp of inputs up to
      // ~8 amplifies the input rounding by |x|, hence 1e-6 of the largest value.
      const Tensor y32 = c.op(x.to(DType::F32));
      ASSERT_EQ(y32.dtype(), DType::F32);
      EXPECT_LT(relative_error(y32, expected), 1e-6);
    }
  }
}

// The unary ops' gradient checks are cases of the op case list (tests/support/op_cases.cpp, run by
// test_op_cases.cpp as OpCases/Gradcheck.*/<op>), with these inputs: the same shape, scales and kinks.

TEST(OpsElementwise, SoftplusFollowsTorchsThreshold) {
  const Tensor x = Tensor::from_vector(std::vector<double>{-30.0, 0.0, 19.5, 20.0, 20.5, 40.0}, {6});
  const Tensor y = ops::softplus(x);
  EXPECT_DOUBLE_EQ(y.data<double>()[1], std::log(2.0));
  EXPECT_DOUBLE_EQ(y.data<double>()[2], std::log1p(std::exp(19.5)));
  EXPECT_DOUBLE_EQ(y.data<double>()[3], std::log1p(std::exp(20.0)));  // threshold is x > 20
  EXPECT_EQ(y.data<double>()[4], 20.5);
  EXPECT_EQ(y.data<double>()[5], 40.0);
  EXPECT_GT(y.data<double>()[0], 0.0);
}

TEST(OpsElementwise, CeilRoundsUpAndPassesNoGradient) {
  const Tensor x = Tensor::from_vector(std::vector<double>{-1.5, -0.0, 0.2, 2.0, 2.001}, {5});
  const std::vector<double> expected = {-1.0, 0.0, 1.0, 2.0, 3.0};
  EXPECT_EQ(values(ops::ceil(x)), expected);
  EXPECT_EQ(values(ops::ceil(x.to(DType::F32))), expected);
  autograd::Tape tape;
  autograd::RecordingScope recording(tape);
  EXPECT_FALSE(ops::ceil(requiring_grad(x.clone())).requires_grad());  // torch's gradient is 0
  EXPECT_EQ(tape.size(), 0u);
}

TEST(OpsElementwise, ActivationNamesTransformersDoesNotHaveAreErrors) {
  const std::string msg = error_of([] { ops::activation(Tensor::zeros({2}), "mish"); });
  EXPECT_NE(msg.find("'mish'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gelu_new"), std::string::npos) << msg;
}

// ------------------------------------------------------------------ binary ops with broadcasting

struct BinaryCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> reference;
};

std::vector<BinaryCase> binary_cases() {
  return {{"add", ops::add, [](double a, double b) { return a + b; }},
          {"sub", ops::sub, [](double a, double b) { return a - b; }},
          {"mul", ops::mul, [](double a, double b) { return a * b; }},
          {"div", ops::div, [](double a, double b) { return a / b; }}};
}

const std::vector<std::pair<Shape, Shape>> kBroadcastShapes = {
    {{2, 3, 4}, {2, 3, 4}},       {{2, 3, 4}, {4}},    {{2, 3, 4}, {3, 1}},       {{2, 3, 4}, {1}},
    {{2, 1, 4}, {3, 1}},          {{3, 1}, {2, 3, 4}}, {{2, 3, 1, 5}, {3, 4, 1}}, {{1, 3, 1}, {2, 1, 4}},
    {{4, 96, 200}, {4, 1, 200}},  // a padding mask on [B, C, T]: large enough for the parallel path
    {{4, 96, 200}, {4, 96, 200}},
    {{4, 96, 200}, {1, 96, 1}},  // a bias: each row of the kernels' runs sums into one element
    {{4, 96, 200}, {1}},         // a scalar
    {{4, 96, 200}, {200}},       // a row shared by every [b, c]
    {{2, 96, 9000}, {2, 1, 9000}},  // rows longer than one parallel block
};

Shape broadcast_shape(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    const int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    out[i] = std::max(da, db);
  }
  return out;
}

// The element of t that output index idx (of a result with out.size() dims) reads.
double broadcast_at(const Tensor& t, const std::vector<int64_t>& idx) {
  std::vector<int64_t> own(t.ndim());
  for (int d = 0; d < t.ndim(); ++d) {
    const int64_t o = idx[idx.size() - t.ndim() + d];
    own[d] = t.dim(d) == 1 ? 0 : o;
  }
  return at(t, own);
}

// Keeps divisors away from 0.
Tensor divisor(const Shape& shape, uint32_t seed) {
  Tensor b = normal_tensor(shape, seed);
  for (int64_t i = 0; i < b.numel(); ++i) {
    double& v = b.data<double>()[i];
    v = v < 0 ? v - 0.5 : v + 0.5;
  }
  return b;
}

TEST(OpsElementwise, BinaryForwardsBroadcastLikeNumPy) {
  for (const BinaryCase& c : binary_cases())
    for (const auto& [sa, sb] : kBroadcastShapes) {
      SCOPED_TRACE(c.name + " " + shape_str(sa) + " " + shape_str(sb));
      const Tensor a = normal_tensor(sa, 1), b = divisor(sb, 2);
      const Tensor y = c.op(a, b);
      const Shape out = broadcast_shape(sa, sb);
      ASSERT_EQ(y.shape(), out);
      Tensor expected = Tensor::empty(out, DType::F64);
      int64_t i = 0;
      for_each_index(out, [&](const std::vector<int64_t>& idx) {
        expected.data<double>()[i++] = c.reference(broadcast_at(a, idx), broadcast_at(b, idx));
      });
      EXPECT_EQ(testing::max_abs_diff(y, expected), 0.0);  // one IEEE operation per element
      // f32: one rounding of the inputs and one of the result.
      EXPECT_LT(relative_error(c.op(a.to(DType::F32), b.to(DType::F32)), expected), 3e-7);
    }
}

TEST(OpsElementwise, BinaryBackwardsMatchFiniteDifferences) {
  for (const BinaryCase& c : binary_cases())
    for (size_t s = 0; s < 8; ++s) {  // the small shapes
      const auto& [sa, sb] = kBroadcastShapes[s];
      check_gradients(c.name + " " + shape_str(sa) + " " + shape_str(sb), {normal_tensor(sa, 3), divisor(sb, 4)},
                      [&c](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); });
    }
}

// At the large shapes the gradients against their closed forms: da = r * b, db = sum over the
// broadcast dimensions of r * a (for mul).
TEST(OpsElementwise, LargeBroadcastGradientsSumOverBroadcastDimensions) {
  for (size_t s = 8; s < kBroadcastShapes.size(); ++s) {
    const auto& [sa, sb] = kBroadcastShapes[s];
    SCOPED_TRACE(shape_str(sa) + " " + shape_str(sb));
    Tensor a = requiring_grad(normal_tensor(sa, 5)), b = requiring_grad(normal_tensor(sb, 6));
    const Tensor r = normal_tensor(sa, 7);
    {
      autograd::Tape tape;
      autograd::RecordingScope recording(tape);
      tape.backward(weighted_sum(ops::mul(a, b), r));
    }
    Tensor da = Tensor::zeros(sa, DType::F64), db = Tensor::zeros(sb, DType::F64);
    int64_t i = 0;
    for_each_index(sa, [&](const std::vector<int64_t>& idx) {
      const double ri = r.data<double>()[i], ai = a.data<double>()[i];
      da.data<double>()[i] = ri * broadcast_at(b, idx);
      // b's dims align with the trailing dims of the index (NumPy broadcasting).
      const size_t lead = idx.size() - b.ndim();
      int64_t off = 0;
      for (int d = 0; d < b.ndim(); ++d) off = off * b.dim(d) + (b.dim(d) == 1 ? 0 : idx[lead + d]);
      db.data<double>()[off] += ri * ai;
      ++i;
    });
    EXPECT_EQ(testing::max_abs_diff(grad_of(a), da), 0.0);
    // The same sums (up to 4 * 96 * 200 terms), possibly in another order.
    EXPECT_LT(relative_error(grad_of(b), db), 1e-13);
    // The broadcast operand first: the reduction then runs as the first operand's gradient.
    Tensor a2 = requiring_grad(a.detach()), b2 = requiring_grad(b.detach());
    {
      autograd::Tape tape;
      autograd::RecordingScope recording(tape);
      tape.backward(weighted_sum(ops::mul(b2, a2), r));
    }
    EXPECT_EQ(testing::max_abs_diff(grad_of(a2), da), 0.0);
    EXPECT_LT(relative_error(grad_of(b2), db), 1e-13);
  }
}

TEST(OpsElementwise, BinaryOperandChecks) {
  std::string msg = error_of([] { ops::add(Tensor::zeros({2, 3}), Tensor::zeros({4})); });
  EXPECT_NE(msg.find("add"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("broadcast"), std::string::npos) << msg;
  msg = error_of([] { ops::mul(Tensor::zeros({2}), Tensor::zeros({2}, DType::F64)); });
  EXPECT_NE(msg.find("mul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f64[2]"), std::string::npos) << msg;
  msg = error_of([] { ops::div(Tensor(), Tensor::zeros({2})); });
  EXPECT_NE(msg.find("undefined"), std::string::npos) << msg;
}

// Only the inputs that need a gradient get one; the other's slot stays untouched.
TEST(OpsElementwise, BinaryGradientOnlyWhereRequested) {
  Tensor a = requiring_grad(normal_tensor({3, 4}, 1));
  const Tensor b = divisor({4}, 2), r = normal_tensor({3, 4}, 3);
  autograd::Tape tape;
  {
    autograd::RecordingScope recording(tape);
    tape.backward(weighted_sum(ops::div(a, b), r));
  }
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_DOUBLE_EQ(grad_of(a).data<double>()[i * 4 + j], r.data<double>()[i * 4 + j] / b.data<double>()[j]);
  EXPECT_FALSE(b.requires_grad());
}

// ------------------------------------------------------------------ gate, softmax

TEST(OpsElementwise, GatedTanhSigmoid) {
  const Tensor x = normal_tensor({2, 6, 5}, 21, 1.5);
  const Tensor y = ops::gated_tanh_sigmoid(x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t t = 0; t < 5; ++t)
        EXPECT_NEAR(at(y, {b, c, t}), std::tanh(at(x, {b, c, t})) * sigmoid_ref(at(x, {b, c + 3, t})), 1e-15);
  EXPECT_LT(relative_error(ops::gated_tanh_sigmoid(x.to(DType::F32)), y), 1e-6);
  check_gradients("gated_tanh_sigmoid", {x}, [](const std::vector<Tensor>& in) { return ops::gated_tanh_sigmoid(in[0]); });
  const std::string msg = error_of([] { ops::gated_tanh_sigmoid(Tensor::zeros({2, 5, 3})); });
  EXPECT_NE(msg.find("gated_tanh_sigmoid"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 5, 3]"), std::string::npos) << msg;
}

TEST(OpsElementwise, SoftmaxOverTheLastDimension) {
  Tensor x = normal_tensor({3, 4, 6}, 31, 3.0);
  x.data<double>()[0] = 800.0;  // exp would overflow without subtracting the row maximum
  const Tensor y = ops::softmax(x);
  for (int64_t r = 0; r < 12; ++r) {
    const double* row = x.data<double>() + r * 6;
    const double m = *std::max_element(row, row + 6);
    double sum = 0.0;
    for (int j = 0; j < 6; ++j) sum += std::exp(row[j] - m);
    for (int j = 0; j < 6; ++j) EXPECT_NEAR(y.data<double>()[r * 6 + j], std::exp(row[j] - m) / sum, 1e-16);
  }
  EXPECT_LT(relative_error(ops::softmax(x.to(DType::F32)), y), 1e-6);
  x.data<double>()[0] = 0.5;
  check_gradients("softmax", {x}, [](const std::vector<Tensor>& in) { return ops::softmax(in[0]); });
}

// ------------------------------------------------------------------ layout

TEST(OpsElementwise, TransposeNarrowFlipCopyTheRightElements) {
  const Tensor x = normal_tensor({2, 3, 4, 5}, 41);
  for (const auto& [d0, d1] : std::vector<std::pair<int, int>>{{0, 2}, {1, 3}, {-1, -2}, {2, 2}, {3, 0}}) {
    SCOPED_TRACE("transpose " + std::to_string(d0) + " " + std::to_string(d1));
    const Tensor y = ops::transpose(x, d0, d1);
    const int a = d0 < 0 ? d0 + 4 : d0, b = d1 < 0 ? d1 + 4 : d1;
    Shape expected_shape = x.shape();
    std::swap(expected_shape[a], expected_shape[b]);
    ASSERT_EQ(y.shape(), expected_shape);
    for_each_index(x.shape(), [&](const std::vector<int64_t>& idx) {
      std::vector<int64_t> t = idx;
      std::swap(t[a], t[b]);
      EXPECT_EQ(at(y, t), at(x, idx));
    });
    check_gradients("transpose", {normal_tensor({2, 3, 2, 3}, 42)},
                    [d0 = d0, d1 = d1](const std::vector<Tensor>& in) { return ops::transpose(in[0], d0, d1); });
  }
  for (int dim = 0; dim < 4; ++dim) {
    SCOPED_TRACE("narrow/flip dim " + std::to_string(dim));
    const int64_t start = 1, length = x.dim(dim) - 1;
    const Tensor n = ops::narrow(x, dim, start, length);
    const Tensor f = ops::flip(x, dim);
    for_each_index(x.shape(), [&](const std::vector<int64_t>& idx) {
      std::vector<int64_t> r = idx;
      r[dim] = x.dim(dim) - 1 - idx[dim];
      EXPECT_EQ(at(f, r), at(x, idx));
      if (idx[dim] >= start) {
        std::vector<int64_t> s = idx;
        s[dim] -= start;
        EXPECT_EQ(at(n, s), at(x, idx));
      }
    });
    check_gradients("narrow", {normal_tensor({2, 3, 4, 3}, 43)},
                    [dim](const std::vector<Tensor>& in) { return ops::narrow(in[0], dim, 1, in[0].dim(dim) - 1); });
    check_gradients("flip", {normal_tensor({2, 3, 4, 3}, 44)},
                    [dim](const std::vector<Tensor>& in) { return ops::flip(in[0], dim); });
  }
  std::string msg = error_of([&] { ops::narrow(x, 2, 3, 2); });
  EXPECT_NE(msg.find("narrow"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 5)"), std::string::npos) << msg;
  msg = error_of([&] { ops::transpose(x, 0, 4); });
  EXPECT_NE(msg.find("dim 4"), std::string::npos) << msg;
}

TEST(OpsElementwise, CatJoinsAlongADimensionAndSplitsTheGradient) {
  for (int dim : {0, 1, 2, -1}) {
    SCOPED_TRACE("cat dim " + std::to_string(dim));
    const int d = dim < 0 ? dim + 3 : dim;
    std::vector<Tensor> parts;
    for (int64_t len : {2, 1, 3}) {
      Shape s = {2, 3, 4};
      s[d] = len;
      parts.push_back(normal_tensor(s, static_cast<uint32_t>(50 + len)));
    }
    const Tensor y = ops::cat(parts, dim);
    Shape expected = {2, 3, 4};
    expected[d] = 6;
    ASSERT_EQ(y.shape(), expected);
    int64_t offset = 0;
    for (const Tensor& p : parts) {
      for_each_index(p.shape(), [&](const std::vector<int64_t>& idx) {
        std::vector<int64_t> o = idx;
        o[d] += offset;
        EXPECT_EQ(at(y, o), at(p, idx));
      });
      offset += p.dim(d);
    }
    check_gradients("cat", parts, [dim](const std::vector<Tensor>& in) { return ops::cat(in, dim); });
  }
  // Parts that need no gradient are skipped, the others still get theirs.
  Tensor a = requiring_grad(normal_tensor({2, 2}, 61));
  const Tensor b = normal_tensor({2, 3}, 62), r = normal_tensor({2, 5}, 63);
  {
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    tape.backward(weighted_sum(ops::cat({b, a}, 1), r));
  }
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(at(grad_of(a), {i, j}), at(r, {i, 3 + j}));
  const std::string msg = error_of([] { ops::cat({Tensor::zeros({2, 3}), Tensor::zeros({3, 3})}, 1); });
  EXPECT_NE(msg.find("cat"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 3]"), std::string::npos) << msg;
}

TEST(OpsElementwise, SumOverOneDimension) {
  const Tensor x = normal_tensor({2, 3, 4}, 71);
  for (int dim : {0, 1, 2, -1})
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE("sum dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""));
      const int d = dim < 0 ? dim + 3 : dim;
      const Tensor y = ops::sum(x, dim, keepdim);
      Shape reduced = x.shape();
      reduced[d] = 1;
      Shape expected_shape = reduced;
      if (!keepdim) expected_shape.erase(expected_shape.begin() + d);
      ASSERT_EQ(y.shape(), expected_shape);
      const Tensor yk = y.reshape(reduced);
      for_each_index(reduced, [&](const std::vector<int64_t>& idx) {
        double s = 0.0;
        std::vector<int64_t> i = idx;
        for (i[d] = 0; i[d] < x.dim(d); ++i[d]) s += at(x, i);
        EXPECT_NEAR(at(yk, idx), s, 1e-15);
      });
      check_gradients("sum", {x},
                      [dim, keepdim](const std::vector<Tensor>& in) { return ops::sum(in[0], dim, keepdim); });
    }
}

// A chain through several of these ops, with inputs used twice: gradients add up.
TEST(OpsElementwise, ChainOfOpsMatchesFiniteDifferences) {
  check_gradients("chain", {normal_tensor({2, 4, 5}, 81), normal_tensor({2, 1, 5}, 82, 0.5)},
                  [](const std::vector<Tensor>& in) {
                    const Tensor& x = in[0];
                    const Tensor& m = in[1];
                    Tensor g = ops::gated_tanh_sigmoid(ops::cat({x, ops::flip(x, 2)}, 1));  // [2, 4, 5]
                    Tensor h = ops::add(ops::mul(g, ops::sigmoid(m)), ops::narrow(x, 1, 0, 4));
                    Tensor s = ops::softmax(ops::transpose(h, 1, 2));                        // [2, 5, 4]
                    return ops::sub(ops::sum(ops::mul(s, s), 2, true), ops::scale(ops::exp(m), 0.5));  // [2, 5, 5]
                  });
}

// ------------------------------------------------------------------ reference data

using Array = testing::CaseArray;

std::map<std::string, Array> load_arrays(const std::string& relative) { return testing::read_case_file(relative); }

class ReferenceFile {
 public:
  explicit ReferenceFile(const std::string& relative) : name_(relative), arrays_(load_arrays(relative)) {}
  Tensor get(const std::string& name, DType dtype = DType::F64) const {
    auto it = arrays_.find(name);
    VC_CHECK(it != arrays_.end(), name_ << " has no '" << name << "'");
    return Tensor::from_vector(it->second.values, it->second.shape).to(dtype);
  }

 private:
  std::string name_;
  std::map<std::string, Array> arrays_;
};

const ReferenceFile& attention_file() {
  static const ReferenceFile f("kernels/attention_cases.txt");
  return f;
}
const ReferenceFile& spline_file() {
  static const ReferenceFile f("kernels/spline_cases.txt");
  return f;
}

// ------------------------------------------------------------------ relative attention in VitsAttention

const char* const kProjections[] = {"q_proj", "k_proj", "v_proj", "out_proj"};

struct AttentionModule {
  std::map<std::string, Tensor> params;  // "<proj>.weight", "<proj>.bias", "emb_rel_k", "emb_rel_v"
  int window = 0;
};

AttentionModule load_module(const std::string& c, DType dtype) {
  const ReferenceFile& f = attention_file();
  AttentionModule m;
  for (const char* p : kProjections)
    for (const char* w : {".weight", ".bias"}) m.params[std::string(p) + w] = f.get(c + "." + p + w, dtype);
  m.params["emb_rel_k"] = f.get(c + ".emb_rel_k", dtype);
  m.params["emb_rel_v"] = f.get(c + ".emb_rel_v", dtype);
  m.window = static_cast<int>(std::lround(f.get(c + ".params").data<double>()[0]));
  return m;
}

struct AttentionRun {
  Tensor q, core, y;
};

// VitsAttention.forward with 2 heads, composed of our ops: projections, head split, the fused
// op, head merge, output projection.
AttentionRun vits_attention(const AttentionModule& m, const Tensor& hidden, const Tensor& mask) {
  const int64_t B = hidden.dim(0), T = hidden.dim(1), E = hidden.dim(2), H = 2, Dh = E / H;
  const auto& p = m.params;
  auto heads = [&](const Tensor& t) { return ops::transpose(t.reshape({B, T, H, Dh}), 1, 2); };
  AttentionRun r;
  r.q = heads(ops::scale(ops::linear(hidden, p.at("q_proj.weight"), p.at("q_proj.bias")), 1.0 / std::sqrt(Dh)));
  const Tensor k = heads(ops::linear(hidden, p.at("k_proj.weight"), p.at("k_proj.bias")));
  const Tensor v = heads(ops::linear(hidden, p.at("v_proj.weight"), p.at("v_proj.bias")));
  const Tensor o = ops::relative_attention(r.q, k, v, p.at("emb_rel_k"), p.at("emb_rel_v"), mask, m.window);
  r.core = ops::transpose(o, 1, 2).reshape({B, T, E});
  r.y = ops::linear(r.core, p.at("out_proj.weight"), p.at("out_proj.bias"));
  return r;
}

const std::vector<std::string> kAttentionCases = {"t1", "t3", "t7", "t12"};

TEST(OpsAttentionTorch, VitsAttentionForwardAndGradientsMatchTransformers) {
  for (const std::string& c : kAttentionCases) {
    SCOPED_TRACE(c);
    const ReferenceFile& f = attention_file();
    AttentionModule m = load_module(c, DType::F64);
    for (auto& [name, t] : m.params) t = requiring_grad(t);
    const Tensor hidden = requiring_grad(f.get(c + ".hidden"));
    const Tensor mask = f.get(c + ".mask");
    autograd::Tape tape;
    {
      autograd::RecordingScope recording(tape);
      const AttentionRun r = vits_attention(m, hidden, mask);
      // f64 against f64: the same products in another order.
      EXPECT_LT(relative_error(r.q, f.get(c + ".q")), 1e-13) << "q";
      EXPECT_LT(relative_error(r.core, f.get(c + ".core")), 1e-12) << "attention output";
      EXPECT_LT(relative_error(r.y, f.get(c + ".y")), 1e-12) << "module output";
      tape.backward(weighted_sum(r.y, f.get(c + ".r")));
    }
    // Gradients are O(1); the key bias's is exactly zero in theory (softmax ignores a constant
    // added to a row) and ~1e-16 in torch, so errors are taken relative to max(max|g|, 1).
    EXPECT_LT(relative_error(grad_of(hidden), f.get(c + ".dhidden"), 1.0), 1e-11) << "dhidden";
    for (const auto& [name, t] : m.params)
      EXPECT_LT(relative_error(grad_of(t), f.get(c + ".d" + name), 1.0), 1e-11) << "d" << name;

    // f32 forward on the same values: float products of at most 12 terms.
    const AttentionModule m32 = load_module(c, DType::F32);
    const AttentionRun r32 = vits_attention(m32, f.get(c + ".hidden", DType::F32), f.get(c + ".mask", DType::F32));
    EXPECT_EQ(r32.y.dtype(), DType::F32);
    EXPECT_LT(relative_error(r32.y, f.get(c + ".y")), 2e-6) << "f32 module output";
  }
}

// The relative-key logits alone, against torch's rel_pos_bias: with zero keys and values and
// no padding, p = softmax(rel_logits) and out_i = sum_j p_ij emb_rel_v[j - i + W].
TEST(OpsAttentionTorch, RelativeLogitsMatchTransformers) {
  for (const std::string& c : kAttentionCases) {
    SCOPED_TRACE(c);
    const ReferenceFile& f = attention_file();
    const Tensor q = f.get(c + ".q"), ek = f.get(c + ".emb_rel_k"), ev = f.get(c + ".emb_rel_v");
    const Tensor rel = f.get(c + ".rel_logits");  // [B*H, T, T]
    const int64_t B = q.dim(0), H = q.dim(1), T = q.dim(2), D = q.dim(3);
    const int W = 4;
    const Tensor zeros = Tensor::zeros(q.shape(), DType::F64);
    const Tensor out = ops::relative_attention(q, zeros, zeros, ek, ev, Tensor::full({B, T}, 1.0, DType::F64), W);
    const Tensor p = ops::softmax(rel).reshape({B, H, T, T});
    Tensor expected = Tensor::zeros(q.shape(), DType::F64);
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = std::max<int64_t>(0, i - W); j <= std::min<int64_t>(T - 1, i + W); ++j)
          for (int64_t d = 0; d < D; ++d)
            expected.data<double>()[(bh * T + i) * D + d] +=
                p.data<double>()[(bh * T + i) * T + j] * ev.data<double>()[(j - i + W) * D + d];
    EXPECT_LT(relative_error(out, expected), 1e-13);
    // And torch's rel_pos_bias is zero outside the window.
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j)
          if (std::abs(j - i) > W) {
            EXPECT_EQ(rel.data<double>()[(bh * T + i) * T + j], 0.0);
          }
  }
}

TEST(OpsAttention, GradientsMatchFiniteDifferences) {
  // T = 3 (< window + 1) and 7 (> window + 1), 2 heads, padding in the second item.
  for (int64_t T : {3, 7}) {
    const int64_t B = 2, H = 2, D = 3;
    const int W = 4;
    std::vector<double> mask(B * T, 1.0);
    mask[B * T - 1] = 0.0;
    mask[B * T - 2] = 0.0;
    const Tensor key_mask = Tensor::from_vector(mask, {B, T});
    check_gradients("relative_attention T=" + std::to_string(T),
                    {normal_tensor({B, H, T, D}, 91, 0.8), normal_tensor({B, H, T, D}, 92, 0.8),
                     normal_tensor({B, H, T, D}, 93), normal_tensor({1, 2 * W + 1, D}, 94, 0.8),
                     normal_tensor({1, 2 * W + 1, D}, 95)},
                    [&](const std::vector<Tensor>& in) {
                      return ops::relative_attention(in[0], in[1], in[2], in[3], in[4], key_mask, W);
                    });
  }
}

TEST(OpsAttention, OperandChecks) {
  const Tensor q = Tensor::zeros({2, 2, 5, 3}), mask = Tensor::full({2, 5}, 1.0), emb = Tensor::zeros({1, 9, 3});
  std::string msg = error_of([&] { ops::relative_attention(q, Tensor::zeros({2, 2, 4, 3}), q, emb, emb, mask, 4); });
  EXPECT_NE(msg.find("relative_attention"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 2, 4, 3]"), std::string::npos) << msg;
  msg = error_of([&] { ops::relative_attention(q, q, q, Tensor::zeros({1, 7, 3}), emb, mask, 4); });
  EXPECT_NE(msg.find("[1, 9, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1, 7, 3]"), std::string::npos) << msg;
  msg = error_of([&] { ops::relative_attention(q, q, q, emb, emb, Tensor::full({2, 4}, 1.0), 4); });
  EXPECT_NE(msg.find("key mask"), std::string::npos) << msg;
  msg = error_of([&] { ops::relative_attention(q, q, q, emb.to(DType::F64), emb, mask, 4); });
  EXPECT_NE(msg.find("dtypes differ"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f64[1, 9, 3]"), std::string::npos) << msg;
}

// ------------------------------------------------------------------ spline

TEST(OpsSplineTorch, OutputsAndGradientsMatchTransformers) {
  for (const std::string c : {"forward_bins10", "reverse_bins10", "reverse_bins6_bound3"}) {
    SCOPED_TRACE(c);
    const ReferenceFile& f = spline_file();
    const Tensor params = f.get(c + ".params");
    const bool reverse = params.data<double>()[1] != 0.0;
    const double bound = params.data<double>()[2];
    std::map<std::string, Tensor> in;
    for (const char* name : {"inputs", "widths", "heights", "derivatives"})
      in[name] = requiring_grad(f.get(c + "." + name));
    autograd::Tape tape;
    {
      autograd::RecordingScope recording(tape);
      auto [y, logdet] =
          ops::rational_quadratic_spline(in["inputs"], in["widths"], in["heights"], in["derivatives"], reverse, bound);
      // See tests/kernels/test_spline.cpp for these tolerances.
      EXPECT_LT(relative_error(y, f.get(c + ".y64")), 1e-12);
      EXPECT_LT(relative_error(logdet, f.get(c + ".logdet64")), 1e-12);
      tape.backward(ops::add(weighted_sum(y, f.get(c + ".r_y")), weighted_sum(logdet, f.get(c + ".r_logdet"))));
    }
    for (const auto& [name, t] : in) EXPECT_LT(relative_error(grad_of(t), f.get(c + ".d" + name)), 1e-10) << name;

    auto [y32, logdet32] = ops::rational_quadratic_spline(
        f.get(c + ".inputs", DType::F32), f.get(c + ".widths", DType::F32), f.get(c + ".heights", DType::F32),
        f.get(c + ".derivatives", DType::F32), reverse, bound);
    EXPECT_LT(relative_error(y32, f.get(c + ".y32")), 1e-5);
    EXPECT_LT(relative_error(logdet32, f.get(c + ".logdet32")), 1e-5);
  }
}

TEST(OpsSpline, GradientsOfBothOutputsMatchFiniteDifferences) {
  for (const bool reverse : {false, true}) {
    const int64_t n = 12;
    const int bins = 4;
    Tensor x = random_away_from({n}, 101, 2.5, {-3.0, 3.0});
    check_gradients(std::string("spline ") + (reverse ? "reverse" : "forward"),
                    {x, normal_tensor({n, bins}, 102, 0.7), normal_tensor({n, bins}, 103, 0.7),
                     normal_tensor({n, bins - 1}, 104, 0.7)},
                    [reverse](const std::vector<Tensor>& in) {
                      auto [y, logdet] = ops::rational_quadratic_spline(in[0], in[1], in[2], in[3], reverse, 3.0);
                      return ops::cat({y, logdet}, 0);
                    });
  }
}

TEST(OpsSpline, OperandChecks) {
  const Tensor x = Tensor::zeros({6}), w = Tensor::zeros({6, 4}), d = Tensor::zeros({6, 3});
  std::string msg = error_of([&] { ops::rational_quadratic_spline(x, w, w, Tensor::zeros({6, 4}), false, 5.0); });
  EXPECT_NE(msg.find("rational_quadratic_spline"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[6, 4]"), std::string::npos) << msg;
  msg = error_of([&] { ops::rational_quadratic_spline(x, w, w, d.to(DType::F64), false, 5.0); });
  EXPECT_NE(msg.find("f64[6, 3]"), std::string::npos) << msg;
}

}  // namespace
}  // namespace vitscuda
