// Op-level tests of linear, matmul, embedding, conv1d, conv_transpose1d, layer norms and
// weight norm: outputs and tape gradients against PyTorch (tests/data/kernels/torch_nn_cases.txt,
// written by tools/golden/make_kernel_cases.py), operand checks and their messages, gradient
// accumulation across backward passes, and a finite-difference check of a chain of these ops.
//
// The loss is L = sum(y * r) for a fixed random r, formed with ops::linear (y flattened times r
// as a one-row weight) so these tests need no other op.
#include <gtest/gtest.h>

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

// ------------------------------------------------------------------ reference data

using Array = testing::CaseArray;

const std::map<std::string, Array>& torch_cases() {
  static const std::map<std::string, Array> cases = testing::read_case_file("kernels/torch_nn_cases.txt");
  return cases;
}

bool has_case(const std::string& name) { return torch_cases().count(name) > 0; }

const Array& torch_array(const std::string& name) {
  auto it = torch_cases().find(name);
  VC_CHECK(it != torch_cases().end(), "torch_nn_cases.txt has no '" << name << "'");
  return it->second;
}

Tensor torch_tensor(const std::string& name, DType dtype = DType::F64) {
  const Array& a = torch_array(name);
  return Tensor::from_vector(a.values, a.shape).to(dtype);
}

std::vector<int> torch_params(const std::string& name) {
  std::vector<int> p;
  for (double v : torch_array(name).values) p.push_back(static_cast<int>(std::lround(v)));
  return p;
}

// ------------------------------------------------------------------ helpers

using testing::requiring_grad;

Tensor grad_of(const Tensor& t) {
  EXPECT_TRUE(t.requires_grad());
  return testing::grad_of(t);
}

// L = sum(y * r) as a [1, 1] tensor on the tape.
using testing::weighted_sum;

double scalar_value(const Tensor& t) { return t.to(DType::F64).data<double>()[0]; }

// max|a - b| / max|b|.
double relative_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape()) << a.describe() << " vs " << b.describe();
  if (a.shape() != b.shape()) return 1e300;
  Tensor bd = b.to(DType::F64);
  double den = 0.0;
  for (int64_t i = 0; i < bd.numel(); ++i) den = std::max(den, std::fabs(bd.data<double>()[i]));
  const double diff = testing::max_abs_diff(a, b);
  return den > 0.0 ? diff / den : diff;
}

using vitscuda::testing::error_of;

// ------------------------------------------------------------------ against PyTorch

using CaseOp = std::function<Tensor(const std::map<std::string, Tensor>&, const std::vector<int>&)>;

// Runs `op` on the stored inputs (f64, all requiring gradients) and compares the output and
// the tape's gradients of sum(y * r) with torch's. Then repeats the forward in f32.
void check_against_torch(const std::string& prefix, const std::vector<std::string>& input_names, const CaseOp& op) {
  SCOPED_TRACE(prefix);
  const std::vector<int> params = has_case(prefix + ".params") ? torch_params(prefix + ".params") : std::vector<int>();
  std::map<std::string, Tensor> inputs;
  for (const std::string& name : input_names)
    if (has_case(prefix + "." + name)) inputs[name] = requiring_grad(torch_tensor(prefix + "." + name));

  autograd::Tape tape;
  {
    autograd::RecordingScope recording(tape);
    Tensor y = op(inputs, params);
    // f64 against f64: the same sums in another order, so agreement to ~1e-15 relative.
    EXPECT_LT(relative_error(y, torch_tensor(prefix + ".y")), 1e-12) << "output";
    tape.backward(weighted_sum(y, torch_tensor(prefix + ".r")));
  }
  for (const auto& [name, t] : inputs)
    EXPECT_LT(relative_error(grad_of(t), torch_tensor(prefix + ".d" + name)), 1e-12) << "gradient of " << name;

  // f32 forward: inputs rounded to float (relative 6e-8) and float sums over at most ~100
  // terms keep the output within 1e-5 of the largest value.
  std::map<std::string, Tensor> inputs32;
  for (const auto& [name, t] : inputs) inputs32[name] = t.detach().to(DType::F32);
  Tensor y32 = op(inputs32, params);
  EXPECT_EQ(y32.dtype(), DType::F32);
  EXPECT_LT(relative_error(y32, torch_tensor(prefix + ".y")), 1e-5) << "f32 output";
}

Tensor input_or_undefined(const std::map<std::string, Tensor>& in, const std::string& name) {
  auto it = in.find(name);
  return it == in.end() ? Tensor() : it->second;
}

TEST(OpsNnTorch, Conv1dMatchesTorch) {
  int cases = 0;
  for (const std::string name : {"same", "strided_dilated_groups_asym", "depthwise_dilated", "pointwise_no_bias"}) {
    check_against_torch("conv1d." + name, {"x", "w", "b"}, [](const auto& in, const std::vector<int>& p) {
      return ops::conv1d(in.at("x"), in.at("w"), input_or_undefined(in, "b"), p.at(0), p.at(1), p.at(2), p.at(3),
                         p.at(4));
    });
    ++cases;
  }
  EXPECT_EQ(cases, 4);
}

TEST(OpsNnTorch, ConvTranspose1dMatchesTorch) {
  for (const std::string name : {"hifigan_k16_s8", "k4_s2", "k11_s5"})
    check_against_torch("conv_transpose1d." + name, {"x", "w", "b"}, [](const auto& in, const std::vector<int>& p) {
      return ops::conv_transpose1d(in.at("x"), in.at("w"), input_or_undefined(in, "b"), p.at(0), p.at(1));
    });
}

TEST(OpsNnTorch, LayerNormsMatchTorch) {
  check_against_torch("layer_norm.last_dim", {"x", "gamma", "beta"}, [](const auto& in, const std::vector<int>& p) {
    return ops::layer_norm(in.at("x"), in.at("gamma"), in.at("beta"), p.at(0) * 1e-9);
  });
  check_against_torch("layer_norm_channels.basic", {"x", "gamma", "beta"},
                      [](const auto& in, const std::vector<int>& p) {
                        return ops::layer_norm_channels(in.at("x"), in.at("gamma"), in.at("beta"), p.at(0) * 1e-9);
                      });
}

TEST(OpsNnTorch, WeightNormLinearMatmulMatchTorch) {
  check_against_torch("weight_norm.conv_weight", {"g", "v"},
                      [](const auto& in, const std::vector<int>&) { return ops::weight_norm(in.at("g"), in.at("v")); });
  check_against_torch("linear.with_bias", {"x", "w", "b"}, [](const auto& in, const std::vector<int>&) {
    return ops::linear(in.at("x"), in.at("w"), in.at("b"));
  });
  check_against_torch("matmul.batched", {"a", "b"},
                      [](const auto& in, const std::vector<int>&) { return ops::matmul(in.at("a"), in.at("b")); });
}

// ------------------------------------------------------------------ shapes and checks

TEST(OpsNn, OutputShapes) {
  Tensor x = Tensor::zeros({2, 4, 11});
  EXPECT_EQ(ops::conv1d(x, Tensor::zeros({6, 2, 3}), Tensor::zeros({6}), 2, 1, 0, 2, 2).shape(), (Shape{2, 6, 4}));
  EXPECT_EQ(ops::conv_transpose1d(x, Tensor::zeros({4, 3, 16}), Tensor(), 8, 4).shape(), (Shape{2, 3, 88}));
  EXPECT_EQ(ops::linear(x, Tensor::zeros({5, 11}), Tensor()).shape(), (Shape{2, 4, 5}));
  EXPECT_EQ(ops::matmul(x, Tensor::zeros({2, 11, 3})).shape(), (Shape{2, 4, 3}));
  EXPECT_EQ(ops::layer_norm_channels(x, Tensor::full({4}, 1.0), Tensor::zeros({4}), 1e-5).shape(), x.shape());
  EXPECT_EQ(ops::weight_norm(Tensor::full({6, 1, 1}, 1.0), Tensor::full({6, 2, 3}, 1.0)).shape(), (Shape{6, 2, 3}));
  EXPECT_EQ(ops::embedding(Tensor::zeros({7, 3}), {1, 2, 3, 4, 5, 6}, 2, 3).shape(), (Shape{2, 3, 3}));
}

TEST(OpsNn, ErrorsNameTheOpAndTheShapes) {
  Tensor x = Tensor::zeros({2, 4, 11});
  std::string msg = error_of([&] { ops::conv1d(x, Tensor::zeros({6, 3, 3}), Tensor(), 1, 1, 1, 1, 1); });
  EXPECT_NE(msg.find("conv1d"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[6, 3, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4, 11]"), std::string::npos) << msg;

  msg = error_of([&] { ops::conv1d(x, Tensor::zeros({6, 4, 3}), Tensor::zeros({5}), 1, 1, 1, 1, 1); });
  EXPECT_NE(msg.find("bias"), std::string::npos) << msg;

  msg = error_of([&] { ops::conv1d(Tensor::zeros({1, 4, 2}), Tensor::zeros({6, 4, 5}), Tensor(), 1, 0, 0, 1, 1); });
  EXPECT_NE(msg.find("shorter than the kernel"), std::string::npos) << msg;

  msg = error_of([&] { ops::conv1d(x, Tensor::zeros({6, 4, 3}, DType::F64), Tensor(), 1, 1, 1, 1, 1); });
  EXPECT_NE(msg.find("dtypes must match"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f64[6, 4, 3]"), std::string::npos) << msg;

  msg = error_of([&] { ops::conv_transpose1d(x, Tensor::zeros({3, 2, 4}), Tensor(), 2, 1); });
  EXPECT_NE(msg.find("conv_transpose1d"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2, 4]"), std::string::npos) << msg;

  msg = error_of([&] { ops::linear(x, Tensor::zeros({5, 10}), Tensor()); });
  EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5, 10]"), std::string::npos) << msg;

  msg = error_of([&] { ops::matmul(x, Tensor::zeros({2, 10, 3})); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  msg = error_of([&] { ops::matmul(x, Tensor::zeros({3, 11, 3})); });
  EXPECT_NE(msg.find("leading dimensions"), std::string::npos) << msg;

  msg = error_of([&] { ops::layer_norm(x, Tensor::zeros({4}), Tensor::zeros({4}), 1e-5); });
  EXPECT_NE(msg.find("layer_norm"), std::string::npos) << msg;
  msg = error_of([&] { ops::layer_norm_channels(x, Tensor::zeros({11}), Tensor::zeros({11}), 1e-5); });
  EXPECT_NE(msg.find("layer_norm_channels"), std::string::npos) << msg;

  msg = error_of([&] { ops::weight_norm(Tensor::zeros({5, 1, 1}), Tensor::zeros({6, 2, 3})); });
  EXPECT_NE(msg.find("weight_norm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5, 1, 1]"), std::string::npos) << msg;

  msg = error_of([&] { ops::conv1d(Tensor(), Tensor::zeros({6, 4, 3}), Tensor(), 1, 1, 1, 1, 1); });
  EXPECT_NE(msg.find("undefined"), std::string::npos) << msg;
}

TEST(OpsNn, EmbeddingGathersRowsAndNamesABadIdWithItsPosition) {
  Tensor table = normal_tensor({5, 3}, 7);
  const std::vector<int32_t> ids = {4, 0, 2, 2, 1, 3};
  Tensor y = ops::embedding(table, ids, 2, 3);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(y.data<double>()[i * 3 + c], table.data<double>()[ids[i] * 3 + c]);

  std::string msg = error_of([&] { ops::embedding(table, {4, 0, 2, 2, 9, 3}, 2, 3); });
  EXPECT_NE(msg.find("id 9"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("batch 1, time 1"), std::string::npos) << msg;
  msg = error_of([&] { ops::embedding(table, {0, 1, 2}, 2, 3); });
  EXPECT_NE(msg.find("3 ids for batch 2 x time 3"), std::string::npos) << msg;
}

// ------------------------------------------------------------------ autograd behaviour

TEST(OpsNnAutograd, RecordsOnlyWhenATapeRecordsAndAnInputNeedsAGradient) {
  Tensor x = normal_tensor({1, 2, 5}, 1);
  Tensor w = requiring_grad(normal_tensor({3, 2, 3}, 2));
  EXPECT_FALSE(ops::conv1d(x, w, Tensor(), 1, 1, 1, 1, 1).requires_grad());  // no tape
  autograd::Tape tape;
  autograd::RecordingScope recording(tape);
  EXPECT_FALSE(ops::conv1d(x, w.detach(), Tensor(), 1, 1, 1, 1, 1).requires_grad());
  EXPECT_EQ(tape.size(), 0u);
  {
    autograd::NoGradScope no_grad;
    EXPECT_FALSE(
        ops::layer_norm(w, Tensor::full({3}, 1.0, DType::F64), Tensor::zeros({3}, DType::F64), 1e-5).requires_grad());
  }
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_TRUE(ops::conv1d(x, w, Tensor(), 1, 1, 1, 1, 1).requires_grad());
  EXPECT_EQ(tape.size(), 1u);
}

// Two half-batches, each with its own backward, give the gradients of the full batch: every
// backward adds into the parameters' gradient buffers.
TEST(OpsNnAutograd, TwoHalfBatchesAccumulateToTheFullBatchGradient) {
  const Tensor x = normal_tensor({2, 3, 9}, 11), r = normal_tensor({2, 4, 9}, 12);
  const Tensor w0 = normal_tensor({4, 3, 3}, 13), b0 = normal_tensor({4}, 14), gamma0 = normal_tensor({4}, 15),
               beta0 = normal_tensor({4}, 16);

  auto run = [&](const std::vector<std::pair<int64_t, int64_t>>& batches) {
    Tensor w = requiring_grad(w0.clone()), b = requiring_grad(b0.clone()), gamma = requiring_grad(gamma0.clone()),
           beta = requiring_grad(beta0.clone());
    for (const auto& [start, count] : batches) {
      autograd::Tape tape;
      autograd::RecordingScope recording(tape);
      Tensor xs = Tensor::from_vector(
          std::vector<double>(x.data<double>() + start * 27, x.data<double>() + (start + count) * 27), {count, 3, 9});
      Tensor rs = Tensor::from_vector(
          std::vector<double>(r.data<double>() + start * 36, r.data<double>() + (start + count) * 36), {count, 4, 9});
      Tensor y = ops::layer_norm_channels(ops::conv1d(xs, w, b, 1, 4, 0, 2, 1), gamma, beta, 1e-5);
      tape.backward(weighted_sum(y, rs));
    }
    return std::vector<Tensor>{grad_of(w), grad_of(b), grad_of(gamma), grad_of(beta)};
  };
  const std::vector<Tensor> full = run({{0, 2}});
  const std::vector<Tensor> halves = run({{0, 1}, {1, 1}});
  for (size_t i = 0; i < full.size(); ++i) {
    ASSERT_TRUE(full[i].defined() && halves[i].defined());
    // The same terms summed in a different grouping.
    EXPECT_LT(relative_error(halves[i], full[i]), 1e-13) << "parameter " << i;
  }
}

// A chain of these ops (weight norm -> conv1d -> channel layer norm -> transposed conv ->
// linear -> matmul, and embedding -> matmul) in double: the tape's gradients for every input
// against central differences of L = sum(f * r1) + sum(e * r2) (support/gradcheck.h says why 1e-6
// relative holds). The two terms are backpropagated in two passes that accumulate.
TEST(OpsNnAutograd, ChainGradientsMatchFiniteDifferences) {
  std::map<std::string, Tensor> p = {
      {"x", normal_tensor({2, 3, 7}, 21)},  {"g", normal_tensor({4, 1, 1}, 22)},  {"v", normal_tensor({4, 3, 3}, 23)},
      {"b", normal_tensor({4}, 24)},        {"gamma", normal_tensor({4}, 25)},    {"beta", normal_tensor({4}, 26)},
      {"wt", normal_tensor({4, 2, 4}, 27)}, {"bt", normal_tensor({2}, 28)},       {"wl", normal_tensor({5, 14}, 29)},
      {"m", normal_tensor({2, 5, 3}, 30)},  {"table", normal_tensor({6, 7}, 31)}, {"m2", normal_tensor({2, 7, 3}, 32)},
  };
  const std::vector<int32_t> ids = {5, 1, 1, 0};  // a repeated id
  auto forward = [&](const std::map<std::string, Tensor>& q) {
    Tensor w = ops::weight_norm(q.at("g"), q.at("v"));
    Tensor h = ops::conv1d(q.at("x"), w, q.at("b"), 1, 3, 1, 2, 1);                // [2, 4, 7]
    h = ops::layer_norm_channels(h, q.at("gamma"), q.at("beta"), 1e-5);            // [2, 4, 7]
    h = ops::conv_transpose1d(h, q.at("wt"), q.at("bt"), 2, 1);                    // [2, 2, 14]
    h = ops::linear(h, q.at("wl"), Tensor());                                      // [2, 2, 5]
    Tensor f = ops::matmul(h, q.at("m"));                                          // [2, 2, 3]
    Tensor e = ops::matmul(ops::embedding(q.at("table"), ids, 2, 2), q.at("m2"));  // [2, 2, 3]
    return std::make_pair(f, e);
  };
  const Tensor r1 = normal_tensor({2, 2, 3}, 40), r2 = normal_tensor({2, 2, 3}, 41);
  auto loss_value = [&](const std::map<std::string, Tensor>& q) {
    auto [f, e] = forward(q);
    return scalar_value(weighted_sum(f, r1)) + scalar_value(weighted_sum(e, r2));
  };

  std::map<std::string, Tensor> q;
  for (const auto& [name, t] : p) q[name] = requiring_grad(t.clone());
  for (int term = 0; term < 2; ++term) {
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    auto [f, e] = forward(q);
    tape.backward(term == 0 ? weighted_sum(f, r1) : weighted_sum(e, r2));
  }

  for (auto& [name, t] : p) {
    SCOPED_TRACE(name);
    const Tensor numeric = testing::numeric_gradient(t, [&] { return loss_value(p); });
    const Tensor analytic = grad_of(q.at(name));
    ASSERT_TRUE(analytic.defined());
    EXPECT_LT(relative_error(analytic, numeric), 1e-6);
  }
}

TEST(OpsNnAutograd, InputsWithoutGradientGetNoneAndOthersAreStillCorrect) {
  // Only the input requires a gradient: the weight is kept for dx, nothing is written for w.
  const Tensor x0 = normal_tensor({2, 3, 8}, 51), w = normal_tensor({3, 5, 4}, 52), r = normal_tensor({2, 5, 18}, 53);
  Tensor x_only = requiring_grad(x0.clone());
  Tensor x_full = requiring_grad(x0.clone()), w_full = requiring_grad(w.clone());
  {
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    tape.backward(weighted_sum(ops::conv_transpose1d(x_only, w, Tensor(), 2, 0), r));
  }
  {
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    tape.backward(weighted_sum(ops::conv_transpose1d(x_full, w_full, Tensor(), 2, 0), r));
  }
  EXPECT_FALSE(w.requires_grad());
  EXPECT_EQ(testing::max_abs_diff(grad_of(x_only), grad_of(x_full)), 0.0);
}

}  // namespace
}  // namespace vitscuda
