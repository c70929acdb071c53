#include "support/op_cases.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/stft_mel.h"
#include "support/test_support.h"
#if VITSCUDA_HAVE_CUDA
#include "kernels/conv1d.h"
#endif

namespace vitscuda::testing {

const Tolerance kExact{"exact", Tolerance::Kind::Exact, 0, 0, 2e-5,
                       "copies, gathers, layout and correctly rounded + - * /; gradients sum in another order"};
const Tolerance kPointwise{"pointwise (few ulp)", Tolerance::Kind::Pointwise, 2e-6, 2e-6, 2e-5,
                           "libm functions within 2 ulp on the GPU and 1 in glibc"};
const Tolerance kReduction{"reduction (rel-L2 2e-5)", Tolerance::Kind::RelativeL2, 0, 2e-5, 2e-5,
                           "float sums of K terms in another order, ~sqrt(K) * 6e-8"};
const Tolerance kCudnn{"cuDNN (rel-L2 1e-4)", Tolerance::Kind::RelativeL2, 0, 1e-4, 1e-4,
                       "cuDNN may choose FFT or Winograd algorithms, ~1e-5 relative"};
const Tolerance kNormalisation{"normalisation (rel-L2 1e-5)", Tolerance::Kind::RelativeL2, 0, 1e-5, 2e-5,
                               "statistics in double on both sides, only the final roundings differ"};
const Tolerance kWeightNorm{"weight norm (rel-L2 1e-6)", Tolerance::Kind::RelativeL2, 0, 1e-6, 2e-5,
                            "one norm per row in double, then a scale"};
const Tolerance kSpline{"spline (rel-L2 1e-4)", Tolerance::Kind::RelativeL2, 0, 1e-4, 1e-4,
                        "libm ulps amplified by the slope and the log-determinant's conditioning"};

// ---------------------------------------------------------------- comparisons

namespace {

std::string shape_mismatch(const Tensor& got, const Tensor& reference) {
  return got.shape() == reference.shape() ? std::string()
                                          : "shape " + shape_str(got.shape()) + " vs " + shape_str(reference.shape());
}

Comparison relative_l2_comparison(double limit, const Tensor& got, const Tensor& reference) {
  Comparison c;
  c.detail = shape_mismatch(got, reference);
  if (!c.detail.empty()) return c;
  c.value = relative_l2(got, reference);
  c.ok = c.value < limit;  // NaN fails
  c.detail = "relative L2 " + std::to_string(c.value) + " (limit " + std::to_string(limit) + "), max |diff| " +
             std::to_string(max_abs_diff(got, reference));
  return c;
}

}  // namespace

Comparison compare_forward(const Tolerance& tolerance, const Tensor& got, const Tensor& reference) {
  switch (tolerance.forward) {
    case Tolerance::Kind::Exact: {
      Comparison c;
      c.detail = shape_mismatch(got, reference);
      if (!c.detail.empty()) return c;
      // Bitwise-equal values, NaN where the reference has NaN (max_abs_diff alone would skip a NaN).
      const std::vector<float> a = got.to(Device::CPU).to_float_vector();
      const std::vector<float> b = reference.to(Device::CPU).to_float_vector();
      size_t nan_mismatches = 0;
      for (size_t i = 0; i < a.size(); ++i) nan_mismatches += std::isnan(a[i]) != std::isnan(b[i]);
      c.value = nan_mismatches ? INFINITY : max_abs_diff(got, reference);
      c.ok = c.value == 0.0;
      c.detail = "max |diff| " + std::to_string(c.value) + " (must be exactly 0)";
      return c;
    }
    case Tolerance::Kind::Pointwise: {
      Comparison c;
      c.detail = shape_mismatch(got, reference);
      if (!c.detail.empty()) return c;
      const std::vector<float> a = got.to(Device::CPU).to_float_vector();
      const std::vector<float> b = reference.to(Device::CPU).to_float_vector();
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) != std::isnan(b[i])) {
          worst = INFINITY;
          break;
        }
        if (std::isnan(b[i])) continue;
        worst = std::max(worst, std::fabs(double(a[i]) - b[i]) /
                                    (tolerance.forward_abs + tolerance.forward_rel * std::fabs(double(b[i]))));
      }
      c.value = worst;
      c.ok = worst <= 1.0;
      c.detail = "worst |diff| / (" + std::to_string(tolerance.forward_abs) + " + " +
                 std::to_string(tolerance.forward_rel) + " |ref|) = " + std::to_string(worst) +
                 " (limit 1), max |diff| " +
                 std::to_string(max_abs_diff(got, reference));
      return c;
    }
    case Tolerance::Kind::RelativeL2:
      return relative_l2_comparison(tolerance.forward_rel, got, reference);
  }
  VC_FAIL("compare_forward: unknown tolerance kind");
}

Comparison compare_gradient(const Tolerance& tolerance, const Tensor& got, const Tensor& reference) {
  return relative_l2_comparison(tolerance.backward_rel_l2, got, reference);
}

// ---------------------------------------------------------------- generators

namespace {

std::vector<double> normal_values(const Shape& shape, uint32_t seed, double scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(gen);
  return v;
}

int64_t shape_dim(const std::vector<Shape>& shapes, int input, int dim, const char* who) {
  VC_CHECK(input >= 0 && input < static_cast<int>(shapes.size()) && dim >= 0 &&
               dim < static_cast<int>(shapes[input].size()),
           who << ": no dimension " << dim << " of input " << input);
  return shapes[input][dim];
}

}  // namespace

Generator normal(double scale) {
  return [scale](const Shape& shape, const std::vector<Shape>&, uint32_t seed) {
    return Tensor::from_vector(normal_values(shape, seed, scale), shape);
  };
}

Generator uniform(double lo, double hi) {
  return [lo, hi](const Shape& shape, const std::vector<Shape>&, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
    for (double& x : v) x = dist(gen);
    return Tensor::from_vector(v, shape);
  };
}

Generator away_from(double scale, std::vector<double> kinks, double gap) {
  return [scale, kinks, gap](const Shape& shape, const std::vector<Shape>&, uint32_t seed) {
    std::vector<double> v = normal_values(shape, seed, scale);
    for (double& x : v)
      for (double k : kinks)
        if (std::fabs(x - k) < gap) x = k + (x < k ? -gap : gap);
    return Tensor::from_vector(v, shape);
  };
}

Generator positive(double scale) {
  return [scale](const Shape& shape, const std::vector<Shape>&, uint32_t seed) {
    std::vector<double> v = normal_values(shape, seed, scale);
    for (double& x : v) x = std::fabs(x) + 0.05;
    return Tensor::from_vector(v, shape);
  };
}

Generator indices_below(int input, int dim) {
  return [input, dim](const Shape& shape, const std::vector<Shape>& shapes, uint32_t seed) {
    const int64_t n = shape_dim(shapes, input, dim, "indices_below");
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int64_t> dist(0, n - 1);
    std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
    for (double& x : v) x = static_cast<double>(dist(gen));
    return Tensor::from_vector(v, shape);
  };
}

Generator frame_expansion(int input, int dim) {
  return [input, dim](const Shape& shape, const std::vector<Shape>& shapes, uint32_t) {
    VC_CHECK(shape.size() == 2, "frame_expansion: index shape must be [B, F], got " << shape_str(shape));
    const int64_t T = shape_dim(shapes, input, dim, "frame_expansion"), B = shape[0], F = shape[1];
    std::vector<double> v;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t f = 0; f < F; ++f)
        v.push_back(b == B - 1 && B > 1 && f >= F * 3 / 4 ? -1.0 : static_cast<double>(f * T / F));
    return Tensor::from_vector(v, shape);
  };
}

Generator padding_mask() {
  return [](const Shape& shape, const std::vector<Shape>&, uint32_t) {
    VC_CHECK(shape.size() == 2, "padding_mask: shape must be [B, T], got " << shape_str(shape));
    const int64_t B = shape[0], T = shape[1];
    std::vector<double> v;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) v.push_back(b == 0 || t < T * 3 / 5 ? 1.0 : 0.0);
    return Tensor::from_vector(v, shape);
  };
}

std::vector<int32_t> int_values(const Tensor& t) {
  VC_CHECK(t.device() == Device::CPU, "int_values: " << t.describe() << " is not on the CPU");
  const Tensor d = t.to(DType::F64);
  std::vector<int32_t> out(static_cast<size_t>(d.numel()));
  for (int64_t i = 0; i < d.numel(); ++i) out[i] = static_cast<int32_t>(std::lround(d.data<double>()[i]));
  return out;
}

// ---------------------------------------------------------------- OpCase

bool OpCase::any_differentiable() const {
  for (const InputSpec& s : inputs)
    if (s.differentiable) return true;
  return false;
}

std::vector<bool> OpCase::differentiable() const {
  std::vector<bool> d;
  for (const InputSpec& s : inputs) d.push_back(s.differentiable);
  return d;
}

std::vector<CudaVariant> OpCase::variants() const {
  if (!cuda_variants.empty()) return cuda_variants;
  return {CudaVariant{"", [] {}, tolerance}};
}

void reset_cuda_variants() {
#if VITSCUDA_HAVE_CUDA
  kernels::conv1d_set_cuda_path(kernels::Conv1dCudaPath::Auto);
#endif
}

namespace {

uint32_t name_seed(const std::string& text) {  // FNV-1a: the same in every build
  uint32_t h = 2166136261u;
  for (unsigned char ch : text) h = (h ^ ch) * 16777619u;
  return h;
}

}  // namespace

std::vector<Tensor> case_inputs(const OpCase& c, CaseSize size) {
  std::vector<Shape> shapes;
  for (const InputSpec& s : c.inputs) shapes.push_back(size == CaseSize::Small ? s.small : s.large);
  std::vector<Tensor> values;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = c.inputs[i].generate(shapes[i], shapes, name_seed(c.name + "." + c.inputs[i].name));
    VC_CHECK(t.shape() == shapes[i] && t.dtype() == DType::F64,
             "op case " << c.name << ": input " << c.inputs[i].name << " generated " << t.describe() << ", expected f64"
                        << shape_str(shapes[i]));
    values.push_back(t);
  }
  return values;
}

std::vector<Tensor> place_inputs(const OpCase& c, const std::vector<Tensor>& values, Device device, DType dtype) {
  std::vector<Tensor> placed;
  for (size_t i = 0; i < values.size(); ++i)
    placed.push_back(c.inputs[i].host ? values[i] : values[i].to(dtype).to(device));
  return placed;
}

Tensor run_forward(const OpCase& c, const std::vector<Tensor>& placed) {
  autograd::NoGradScope no_grad;
  return c.build(placed);
}

std::vector<Tensor> run_gradients(const OpCase& c, const std::vector<Tensor>& placed, uint64_t r_seed) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < placed.size(); ++i) {
    if (!c.inputs[i].differentiable) {
      leaves.push_back(placed[i]);
      continue;
    }
    Tensor leaf = placed[i].clone();
    auto slot = std::make_shared<autograd::GradSlot>();
    slot->shape = leaf.shape();
    slot->dtype = leaf.dtype();
    slot->device = leaf.device();
    leaf.set_grad_slot(slot);
    leaves.push_back(leaf);
  }
  autograd::Tape tape;
  Tensor loss;
  {
    autograd::RecordingScope recording(tape);
    const Tensor y = ops::add(c.build(leaves), c.build(leaves));
    VC_CHECK(y.requires_grad(), "op case " << c.name << ": the output needs no gradient (nothing was recorded)");
    const Tensor r = uniform_tensor(y.shape(), r_seed).to(y.dtype()).to(y.device());
    loss = ops::linear(y.reshape({1, y.numel()}), r.reshape({1, r.numel()}), Tensor());
  }
  tape.backward(loss);
  std::vector<Tensor> grads;
  for (size_t i = 0; i < leaves.size(); ++i)
    grads.push_back(c.inputs[i].differentiable && leaves[i].grad_slot() ? leaves[i].grad_slot()->grad : Tensor());
  return grads;
}

std::string describe_inputs(const OpCase& c, const std::vector<Tensor>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += c.inputs[i].name + " " + shape_str(values[i].shape());
  }
  return out;
}

// ---------------------------------------------------------------- the list

namespace {

using In = std::vector<Tensor>;

InputSpec input(std::string name, Shape small, Shape large, Generator generate, bool differentiable = true) {
  return InputSpec{std::move(name), std::move(small), std::move(large), std::move(generate), differentiable, false};
}
InputSpec host_input(std::string name, Shape small, Shape large, Generator generate) {
  return InputSpec{std::move(name), std::move(small), std::move(large), std::move(generate), false, true};
}
// A mask or other constant the op reads on the device.
InputSpec constant(std::string name, Shape small, Shape large, Generator generate) {
  return InputSpec{std::move(name), std::move(small), std::move(large), std::move(generate), false, false};
}

// One [B, C, T] activation: the small shape for the gradient check, a decoder-sized one for CUDA.
const Shape kSmallAct{2, 3, 7}, kLargeAct{4, 192, 333};

OpCase unary(std::string name, std::vector<std::string> ops, BuildFn build, Generator gen,
             const Tolerance& tolerance = kPointwise) {
  OpCase c;
  c.name = std::move(name);
  c.ops = std::move(ops);
  c.inputs = {input("x", kSmallAct, kLargeAct, std::move(gen))};
  c.build = std::move(build);
  c.tolerance = tolerance;
  return c;
}

void add_unary_cases(std::vector<OpCase>& cases) {
  const Generator smooth = normal(2.0);
  cases.push_back(unary("relu", {"relu"}, [](const In& in) { return ops::relu(in[0]); }, away_from(2.0, {0.0})));
  cases.push_back(unary("leaky_relu", {"leaky_relu"}, [](const In& in) { return ops::leaky_relu(in[0], 0.1); },
                        away_from(2.0, {0.0})));
  cases.push_back(unary("gelu", {"gelu"}, [](const In& in) { return ops::gelu(in[0]); }, smooth));
  cases.push_back(unary("tanh", {"tanh"}, [](const In& in) { return ops::tanh(in[0]); }, smooth));
  cases.push_back(unary("sigmoid", {"sigmoid"}, [](const In& in) { return ops::sigmoid(in[0]); }, smooth));
  cases.push_back(unary("exp", {"exp"}, [](const In& in) { return ops::exp(in[0]); }, smooth));
  cases.push_back(unary("log", {"log"}, [](const In& in) { return ops::log(in[0]); }, positive()));
  // Scale 15: some inputs beyond softplus's threshold 20, where it returns x itself (both branches).
  cases.push_back(unary("softplus", {"softplus"}, [](const In& in) { return ops::softplus(in[0]); },
                        away_from(15.0, {20.0})));
  cases.push_back(unary("clamp_min", {"clamp_min"}, [](const In& in) { return ops::clamp_min(in[0], 0.3); },
                        away_from(2.0, {0.3})));
  cases.push_back(unary("scale", {"scale"}, [](const In& in) { return ops::scale(in[0], -2.5); }, smooth, kExact));
  cases.push_back(
      unary("add_scalar", {"add_scalar"}, [](const In& in) { return ops::add_scalar(in[0], 0.7); }, smooth, kExact));
  // ceil passes no gradient (torch's is 0): the checks assert that nothing is recorded.
  OpCase ceil = unary("ceil", {"ceil"}, [](const In& in) { return ops::ceil(in[0]); }, smooth);
  ceil.inputs[0].differentiable = false;
  cases.push_back(ceil);
  for (const char* act : {"relu", "gelu", "gelu_new", "silu", "swish", "tanh", "sigmoid"}) {
    const std::string a = act;
    cases.push_back(unary("activation_" + a, {"activation"}, [a](const In& in) { return ops::activation(in[0], a); },
                          a == "relu" ? away_from(2.0, {0.0}) : smooth));
  }
  cases.push_back(unary("gated_tanh_sigmoid", {"gated_tanh_sigmoid"},
                        [](const In& in) { return ops::gated_tanh_sigmoid(in[0]); }, normal(1.5)));
  cases.back().inputs[0].small = {2, 6, 5};
  cases.back().inputs[0].large = {2, 384, 257};
}

// add / sub / mul / div of a [B, C, T] tensor and b of a broadcast shape (sub with the broadcast
// operand on the left); b in [0.5, 2) keeps div's divisor away from 0.
void add_binary_cases(std::vector<OpCase>& cases) {
  struct Broadcast {
    const char* suffix;
    Shape small, large;
  };
  const Broadcast shapes[] = {{"", kSmallAct, kLargeAct},
                              {"_broadcast_mask", {2, 1, 7}, {4, 1, 333}},
                              {"_broadcast_bias", {3, 1}, {192, 1}},
                              {"_broadcast_scalar", {1}, {1}},
                              {"_broadcast_row", {1, 1, 7}, {1, 1, 333}}};
  const std::pair<const char*, BuildFn> binary_ops[] = {
      {"add", [](const In& in) { return ops::add(in[0], in[1]); }},
      {"sub", [](const In& in) { return ops::sub(in[1], in[0]); }},
      {"mul", [](const In& in) { return ops::mul(in[0], in[1]); }},
      {"div", [](const In& in) { return ops::div(in[0], in[1]); }},
  };
  for (const auto& [op, build] : binary_ops)
    for (const Broadcast& b : shapes) {
      OpCase c;
      c.name = std::string(op) + b.suffix;
      c.ops = {op};
      c.inputs = {input("a", kSmallAct, kLargeAct, uniform(-1.0, 1.0)),
                  input("b", b.small, b.large, uniform(0.5, 2.0))};
      c.build = build;
      c.tolerance = kExact;
      cases.push_back(c);
    }
}

// Per-item lengths [B] for a [B, frames, tokens] input: item 0 uses all of dimension `dim` of input 0, item b
// loses b * n / (2B) of its n (padding in the batch), never below 1.
Generator batch_lengths(int dim) {
  return [dim](const Shape& shape, const std::vector<Shape>& shapes, uint32_t) {
    const int64_t n = shape_dim(shapes, 0, dim, "batch_lengths"), B = shape.at(0);
    std::vector<double> v;
    for (int64_t b = 0; b < B; ++b) v.push_back(static_cast<double>(std::max<int64_t>(1, n - b * n / (2 * B))));
    return Tensor::from_vector(v, shape);
  };
}

// A log-likelihood [B, F, T] shaped like the search's input: normal noise plus a ridge along the diagonal
// frame / F = token / T, so the best path follows the diagonal loosely, as a trained model's does.
Generator diagonal_log_likelihood() {
  return [](const Shape& shape, const std::vector<Shape>&, uint32_t seed) {
    const int64_t B = shape.at(0), F = shape.at(1), T = shape.at(2);
    std::vector<double> v = normal_values(shape, seed, 3.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t f = 0; f < F; ++f)
        for (int64_t t = 0; t < T; ++t) {
          const double off = static_cast<double>(t) / T - static_cast<double>(f) / F;
          v[(b * F + f) * T + t] += -200.0 - 400.0 * off * off;
        }
    return Tensor::from_vector(v, shape);
  };
}

std::vector<int64_t> int64_values(const Tensor& t) {
  const std::vector<int32_t> v = int_values(t);
  return std::vector<int64_t>(v.begin(), v.end());
}

// The search reads its input in float on both devices with the same additions and comparisons in the same
// order (no contraction possible), so CUDA's map must equal the CPU's.
const Tolerance kSameMap{"identical map", Tolerance::Kind::Exact, 0, 0, 2e-5,
                         "the same float additions and comparisons in the same order on both devices"};

// The monotonic alignment search at the training's size (16 items of up to 400 frames and 150 tokens, padded
// items in the batch). No gradient: the map is returned as a float tensor [B, frames] on the input's device,
// so the CUDA comparison and the benchmark row see it like any other op's output.
OpCase alignment_search_case() {
  OpCase c;
  c.name = "monotonic_alignment_search";
  c.ops = {"monotonic_alignment_search"};
  c.inputs = {constant("log_likelihood", {2, 7, 4}, {16, 400, 150}, diagonal_log_likelihood()),
              host_input("frame_lengths", {2}, {16}, batch_lengths(1)),
              host_input("token_lengths", {2}, {16}, batch_lengths(2))};
  c.build = [](const In& in) {
    const std::vector<int32_t> map =
        ops::monotonic_alignment_search(in[0], int64_values(in[1]), int64_values(in[2]));
    return Tensor::from_vector(std::vector<float>(map.begin(), map.end()), {in[0].dim(0), in[0].dim(1)})
        .to(in[0].device());
  };
  c.tolerance = kSameMap;
  return c;
}

void add_layout_cases(std::vector<OpCase>& cases) {
  auto layout = [&](std::string name, std::string op, Shape small, Shape large, BuildFn build) {
    OpCase c;
    c.name = std::move(name);
    c.ops = {std::move(op)};
    c.inputs = {input("x", std::move(small), std::move(large), normal())};
    c.build = std::move(build);
    c.tolerance = kExact;
    cases.push_back(c);
  };
  layout("transpose", "transpose", {2, 3, 4}, {2, 384, 257}, [](const In& in) { return ops::transpose(in[0], 1, 2); });
  layout("transpose_4d_inner", "transpose", {2, 3, 2, 3}, {2, 37, 2, 96},
         [](const In& in) { return ops::transpose(in[0], 1, 2); });
  layout("transpose_4d_outer", "transpose", {2, 3, 2, 3}, {2, 37, 2, 96},
         [](const In& in) { return ops::transpose(in[0], 0, 3); });
  layout("narrow_channels", "narrow", {2, 6, 4}, {2, 384, 257},
         [](const In& in) { return ops::narrow(in[0], 1, in[0].dim(1) / 4, in[0].dim(1) / 2); });
  layout("narrow_time", "narrow", {2, 3, 8}, {2, 384, 257},
         [](const In& in) { return ops::narrow(in[0], 2, 5 * in[0].dim(2) / 257, in[0].dim(2) / 6); });
  layout("flip", "flip", {2, 3, 4}, {2, 384, 257}, [](const In& in) { return ops::flip(in[0], 1); });
  // Both sides padded, so the backward folds gradients into mirrored samples at each end (the period
  // discriminators pad the right only, by up to period - 1, of a [B, 1, 8192] segment).
  layout("reflect_pad", "reflect_pad", {2, 3, 7}, {16, 1, 8191},
         [](const In& in) { return ops::reflect_pad(in[0], 2, 3); });
  layout("sum_channels", "sum", {2, 3, 4}, {2, 384, 257}, [](const In& in) { return ops::sum(in[0], 1, true); });
  layout("sum_time", "sum", {2, 3, 4}, {2, 384, 257}, [](const In& in) { return ops::sum(in[0], 2, false); });
  OpCase cat;
  cat.name = "cat";
  cat.ops = {"cat"};
  cat.inputs = {input("x", {2, 3, 4}, {2, 384, 257}, normal()), input("y", {2, 2, 4}, {2, 96, 257}, normal())};
  cat.build = [](const In& in) { return ops::cat({in[0], in[1]}, 1); };
  cat.tolerance = kExact;
  cases.push_back(cat);
  OpCase softmax;
  softmax.name = "softmax";
  softmax.ops = {"softmax"};
  softmax.inputs = {input("x", {3, 6}, {64, 301}, uniform(-20.0, 20.0))};
  softmax.build = [](const In& in) { return ops::softmax(in[0]); };
  softmax.tolerance = kPointwise;
  cases.push_back(softmax);
}

void add_linear_algebra_cases(std::vector<OpCase>& cases) {
  for (const bool bias : {true, false}) {
    OpCase c;
    c.name = bias ? "linear" : "linear_no_bias";
    c.ops = {"linear"};
    c.inputs = {input("x", {2, 3, 4}, {3, 141, 192}, uniform(-1, 1)),
                input("w", {5, 4}, {768, 192}, uniform(-0.1, 0.1))};
    if (bias) c.inputs.push_back(input("b", {5}, {768}, uniform(-1, 1)));
    c.build = [bias](const In& in) { return ops::linear(in[0], in[1], bias ? in[2] : Tensor()); };
    c.tolerance = kReduction;
    cases.push_back(c);
  }
  OpCase mm;
  mm.name = "matmul";
  mm.ops = {"matmul"};
  mm.inputs = {input("a", {2, 3, 4}, {4, 37, 96}, uniform(-1, 1)), input("b", {2, 4, 2}, {4, 96, 53}, uniform(-1, 1))};
  mm.build = [](const In& in) { return ops::matmul(in[0], in[1]); };
  mm.tolerance = kReduction;
  cases.push_back(mm);
  OpCase emb;
  emb.name = "embedding";
  emb.ops = {"embedding"};
  emb.inputs = {input("table", {6, 4}, {178, 192}, uniform(-1, 1)),
                host_input("ids", {2, 5}, {2, 57}, indices_below(0, 0))};
  emb.build = [](const In& in) { return ops::embedding(in[0], int_values(in[1]), in[1].dim(0), in[1].dim(1)); };
  emb.tolerance = kExact;
  cases.push_back(emb);
  OpCase gather;
  gather.name = "gather_frames";
  gather.ops = {"gather_frames"};
  gather.inputs = {input("x", {2, 3, 4}, {2, 192, 57}, uniform(-1, 1)),
                   host_input("index", {2, 7}, {2, 200}, frame_expansion(0, 2))};
  gather.build = [](const In& in) { return ops::gather_frames(in[0], int_values(in[1]), in[1].dim(1)); };
  gather.tolerance = kExact;
  cases.push_back(gather);
  cases.push_back(alignment_search_case());
}

// conv1d at the model's shapes; groups follow from the inputs (Cin / w's second dimension), so one
// build serves both sizes. CUDA runs both paths: cuDNN (when it can; kCudnn) and im2col + cuBLAS.
void add_convolution_cases(std::vector<OpCase>& cases) {
  struct Conv {
    const char* name;
    int B, Cin, T, Cout, K, stride, pad_left, pad_right, dilation;
    bool depthwise;
    int groups;  // when not depthwise
    int small_T;
  };
  const Conv convs[] = {
      {"decoder_conv_pre", 1, 192, 125, 512, 7, 1, 3, 3, 1, false, 1, 9},
      {"resblock_k11_d5", 2, 64, 1003, 64, 11, 1, 25, 25, 5, false, 1, 30},
      {"resblock_k3_d3", 1, 256, 500, 256, 3, 1, 3, 3, 3, false, 1, 10},
      {"resblock_k7_d3", 2, 64, 301, 64, 7, 1, 9, 9, 3, false, 1, 20},
      {"wavenet_in_k5_d2", 2, 192, 211, 384, 5, 1, 4, 4, 2, false, 1, 11},
      {"pointwise", 3, 192, 97, 384, 1, 1, 0, 0, 1, false, 1, 7},
      {"depthwise", 2, 192, 77, 192, 3, 1, 9, 9, 9, true, 0, 22},
      {"grouped_strided", 2, 64, 101, 32, 4, 2, 1, 1, 1, false, 4, 13},
      {"asymmetric_padding", 2, 48, 64, 40, 4, 1, 1, 2, 1, false, 1, 9},
      {"decoder_conv_post", 1, 32, 4000, 1, 7, 1, 3, 3, 1, false, 1, 12},
  };
  for (const Conv& v : convs) {
    const int groups = v.depthwise ? v.Cin : v.groups;
    // Small: the same kernel, stride, padding, dilation and grouping, a few channels.
    const int small_groups = v.depthwise ? 3 : v.groups;
    const int small_cin = v.depthwise ? 3 : 2 * small_groups;
    const int small_cout = v.depthwise ? 3 : (v.Cout == 1 ? 1 : 2 * small_groups);
    OpCase c;
    c.name = std::string("conv1d_") + v.name;
    c.ops = {"conv1d"};
    c.inputs = {input("x", {2, small_cin, v.small_T}, {v.B, v.Cin, v.T}, uniform(-1, 1)),
                input("w", {small_cout, small_cin / small_groups, v.K}, {v.Cout, v.Cin / groups, v.K},
                      uniform(-0.2, 0.2)),
                input("b", {small_cout}, {v.Cout}, uniform(-1, 1))};
    const int stride = v.stride, pl = v.pad_left, pr = v.pad_right, dil = v.dilation;
    c.build = [stride, pl, pr, dil](const In& in) {
      const int g = static_cast<int>(in[0].dim(1) / in[1].dim(1));
      return ops::conv1d(in[0], in[1], in[2], stride, pl, pr, dil, g);
    };
    c.tolerance = kCudnn;
#if VITSCUDA_HAVE_CUDA
    c.cuda_variants = {{"auto", [] { kernels::conv1d_set_cuda_path(kernels::Conv1dCudaPath::Auto); }, kCudnn},
                       {"im2col", [] { kernels::conv1d_set_cuda_path(kernels::Conv1dCudaPath::Im2colGemm); },
                        kReduction}};
#endif
    cases.push_back(c);
  }
  // conv_transpose1d at HiFi-GAN's upsamplers (padding (K - stride) / 2), cuDNN's backward-data.
  struct ConvT {
    const char* name;
    int B, Cin, T, Cout, K, stride, small_T;
  };
  const ConvT convts[] = {
      {"upsample_k16_s8", 1, 512, 63, 256, 16, 8, 3},  {"upsample_k16_s8_batch2", 2, 256, 101, 128, 16, 8, 4},
      {"upsample_k4_s2", 1, 128, 400, 64, 4, 2, 6},    {"upsample_k4_s2_batch2", 2, 64, 333, 32, 4, 2, 5},
      {"odd_k5_s3", 1, 16, 9, 8, 5, 3, 4},  // odd (K - stride): output longer than T * stride
  };
  for (const ConvT& v : convts) {
    OpCase c;
    c.name = std::string("conv_transpose1d_") + v.name;
    c.ops = {"conv_transpose1d"};
    c.inputs = {input("x", {2, 3, v.small_T}, {v.B, v.Cin, v.T}, uniform(-1, 1)),
                input("w", {3, 2, v.K}, {v.Cin, v.Cout, v.K}, uniform(-0.1, 0.1)),
                input("b", {2}, {v.Cout}, uniform(-1, 1))};
    const int stride = v.stride, pad = (v.K - v.stride) / 2;
    c.build = [stride, pad](const In& in) { return ops::conv_transpose1d(in[0], in[1], in[2], stride, pad); };
    c.tolerance = kCudnn;
    cases.push_back(c);
  }
}

void add_norm_cases(std::vector<OpCase>& cases) {
  // Offset, large-ish values: a one-pass variance would lose digits here.
  OpCase ln;
  ln.name = "layer_norm";
  ln.ops = {"layer_norm"};
  ln.inputs = {input("x", {2, 3, 5}, {3, 141, 192}, uniform(48, 52)), input("gamma", {5}, {192}, uniform(0.5, 1.5)),
               input("beta", {5}, {192}, uniform(-1, 1))};
  ln.build = [](const In& in) { return ops::layer_norm(in[0], in[1], in[2], 1e-5); };
  ln.tolerance = kNormalisation;
  cases.push_back(ln);
  OpCase lnc;
  lnc.name = "layer_norm_channels";
  lnc.ops = {"layer_norm_channels"};
  lnc.inputs = {input("x", {2, 5, 3}, {3, 192, 141}, uniform(48, 52)), input("gamma", {5}, {192}, uniform(0.5, 1.5)),
                input("beta", {5}, {192}, uniform(-1, 1))};
  lnc.build = [](const In& in) { return ops::layer_norm_channels(in[0], in[1], in[2], 1e-4); };
  lnc.tolerance = kNormalisation;
  cases.push_back(lnc);
  OpCase wn;
  wn.name = "weight_norm";
  wn.ops = {"weight_norm"};
  wn.inputs = {input("g", {4, 1, 1}, {512, 1, 1}, uniform(0.1, 2.0)),
               input("v", {4, 3, 3}, {512, 192, 7}, uniform(-1, 1))};
  wn.build = [](const In& in) { return ops::weight_norm(in[0], in[1]); };
  wn.tolerance = kWeightNorm;
  cases.push_back(wn);
}

// The STFT plan of a case, from the filterbank's bin count (n_fft = 2 (bins - 1), hop n_fft / 4, full
// window): one plan per n_fft for the process, so the CPU's DFT basis is built once, not per run.
const kernels::StftPlan& case_stft_plan(int64_t bins) {
  static std::mutex mutex;
  static std::map<int64_t, std::unique_ptr<kernels::StftPlan>> plans;
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<kernels::StftPlan>& plan = plans[bins];
  const int n_fft = static_cast<int>(2 * (bins - 1));
  if (!plan) plan = std::make_unique<kernels::StftPlan>(n_fft, n_fft / 4, n_fft);
  return *plan;
}

// The STFT (CPU: a DFT basis GEMM; CUDA: cuFFT) sums n_fft products per bin in another order and
// cuFFT's twiddles round differently: ~1e-6 relative for n_fft 1024, and the log-mel's log and
// filterbank sums keep that size; 1e-4 relative L2 still catches a wrong window, hop, padding or bin.
const Tolerance kStft{"STFT (rel-L2 1e-4)", Tolerance::Kind::RelativeL2, 0, 1e-4, 1e-4,
                      "DFT sums in another order and cuFFT's twiddle rounding, ~1e-6 relative"};

// Audio ops and losses at the training loss's shapes: mms-tts-eng's STFT (n_fft 1024, hop 256) on 4 x 2 s,
// the log-mel's 80 bands; small: n_fft 16, hop 4. Filterbank weights in [0.05, 1) keep every mel energy far
// above the log's clamp at 1e-5.
void add_audio_loss_cases(std::vector<OpCase>& cases) {
  OpCase spec;
  spec.name = "linear_spectrogram";
  spec.ops = {"linear_spectrogram"};
  // No backward (a model input, not a loss term): the wave is a constant, so nothing is recorded.
  spec.inputs = {constant("wave", {2, 64}, {4, 32768}, uniform(-1, 1)),
                 constant("filterbank", {5, 9}, {80, 513}, uniform(0.05, 1.0))};
  spec.build = [](const In& in) { return ops::linear_spectrogram(in[0], case_stft_plan(in[1].dim(1))); };
  spec.tolerance = kStft;
  spec.refuses_gradient = true;
  cases.push_back(spec);
  OpCase mel;
  mel.name = "log_mel";
  mel.ops = {"log_mel"};
  mel.inputs = {input("wave", {2, 64}, {4, 32768}, uniform(-1, 1)),
                constant("filterbank", {5, 9}, {80, 513}, uniform(0.05, 1.0))};
  mel.build = [](const In& in) { return ops::log_mel(in[0], case_stft_plan(in[1].dim(1)), in[1]); };
  mel.tolerance = kStft;
  cases.push_back(mel);
  OpCase l1;
  l1.name = "masked_l1_loss";
  l1.ops = {"masked_l1_loss"};
  // Item 1 padded after 3/5 of its frames; |generated - target| is never 0 for independent draws.
  l1.inputs = {input("generated", {2, 3, 7}, {4, 80, 125}, uniform(-1, 1)),
               input("target", {2, 3, 7}, {4, 80, 125}, uniform(-1, 1)),
               constant("mask", {2, 7}, {4, 125}, padding_mask())};
  l1.build = [](const In& in) { return ops::masked_l1_loss(in[0], in[1], in[2]); };
  l1.tolerance = kReduction;
  cases.push_back(l1);
}

void add_attention_spline_cases(std::vector<OpCase>& cases) {
  // q, k, v [B, H, T, D]; window 4 with relative embeddings, and window 0 without; item 1 padded.
  // Small T = 7 (> window + 1); D = 3.
  for (const int window : {4, 0}) {
    OpCase c;
    c.name = window > 0 ? "relative_attention" : "relative_attention_no_window";
    c.ops = {"relative_attention"};
    const Shape small{2, 2, 7, 3}, large{2, 2, 151, 96};
    c.inputs = {constant("key_mask", {2, 7}, {2, 151}, padding_mask()), input("q", small, large, normal(0.8)),
                input("k", small, large, normal(0.8)), input("v", small, large, normal())};
    if (window > 0) {
      c.inputs.push_back(input("emb_rel_k", {1, 2 * window + 1, 3}, {1, 2 * window + 1, 96}, normal(0.8)));
      c.inputs.push_back(input("emb_rel_v", {1, 2 * window + 1, 3}, {1, 2 * window + 1, 96}, normal()));
    }
    c.build = [window](const In& in) {
      return ops::relative_attention(in[1], in[2], in[3], window > 0 ? in[4] : Tensor(), window > 0 ? in[5] : Tensor(),
                                     in[0], window);
    };
    c.tolerance = kReduction;
    cases.push_back(c);
  }
  // Tail bound 5: inputs inside and outside it (about a fifth in the linear tails), at least 1e-3
  // from it (log|det|'s derivative has a kink there). Output: y and log|det| concatenated.
  for (const bool reverse : {false, true}) {
    OpCase c;
    c.name = reverse ? "rational_quadratic_spline_reverse" : "rational_quadratic_spline";
    c.ops = {"rational_quadratic_spline"};
    c.inputs = {input("inputs", {12}, {3000}, away_from(4.0, {-5.0, 5.0})),
                input("widths", {12, 4}, {3000, 10}, normal(0.7)), input("heights", {12, 4}, {3000, 10}, normal(0.7)),
                input("derivatives", {12, 3}, {3000, 9}, normal(0.7))};
    c.build = [reverse](const In& in) {
      auto [y, logdet] = ops::rational_quadratic_spline(in[0], in[1], in[2], in[3], reverse, 5.0);
      return ops::cat({y, logdet}, 0);
    };
    c.tolerance = kSpline;
    cases.push_back(c);
  }
}

std::vector<OpCase> build_list() {
  std::vector<OpCase> cases;
  add_unary_cases(cases);
  add_binary_cases(cases);
  add_layout_cases(cases);
  add_linear_algebra_cases(cases);
  add_convolution_cases(cases);
  add_norm_cases(cases);
  add_attention_spline_cases(cases);
  add_audio_loss_cases(cases);
  std::set<std::string> names;
  for (const OpCase& c : cases) {
    VC_CHECK(names.insert(c.name).second, "op case " << c.name << " is listed twice");
    for (char ch : c.name)
      VC_CHECK(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_',
               "op case name '" << c.name << "' may only hold letters, digits and '_' (it names tests)");
    VC_CHECK(!c.ops.empty() && c.build && !c.inputs.empty(), "op case " << c.name << " is incomplete");
  }
  return cases;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = build_list();
  return cases;
}

std::vector<std::string> op_case_names() {
  std::vector<std::string> names;
  for (const OpCase& c : op_cases()) names.push_back(c.name);
  return names;
}

const OpCase& op_case(const std::string& name) {
  for (const OpCase& c : op_cases())
    if (c.name == name) return c;
  VC_FAIL("no op case named '" << name << "' in tests/support/op_cases.cpp");
}

}  // namespace vitscuda::testing
