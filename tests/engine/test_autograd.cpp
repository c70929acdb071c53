#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/parameters.h"
#include "support/gradcheck.h"

using namespace vitscuda;

TEST(Autograd, GatherFramesScatterAddsIntoParameterGradients) {
  ParameterStore store;
  store.declare("x", {1, 2, 3});
  store.declare("frozen", {2});
  store.finalize();
  store.enable_grad([](const std::string& n) { return n == "x"; });
  EXPECT_TRUE(store.trainable("x"));
  EXPECT_FALSE(store.trainable("frozen"));
  EXPECT_FALSE(store.get("frozen").requires_grad());
  Tensor x = store.get("x");
  for (int i = 0; i < 6; ++i) x.data<float>()[i] = static_cast<float>(i + 1);

  autograd::Tape tape;
  {
    autograd::RecordingScope rec(tape);
    // frames: token 0 twice, token 2 once, one padded frame.
    Tensor y = ops::gather_frames(store.get("x"), {0, 0, 2, -1}, 4);
    ASSERT_TRUE(y.requires_grad());
    EXPECT_EQ(tape.size(), 1u);
    // The tape seeds the loss with 1; use y reshaped to one element chain: backward of a [1,2,4] output
    // requires a scalar, so feed a hand-made gradient through the node by reducing first.
    Tensor sum = ops::sum(ops::sum(ops::sum(y, 2, false), 1, false), 0, false);
    ASSERT_EQ(sum.numel(), 1);
    tape.backward(sum);
  }
  EXPECT_EQ(tape.size(), 0u);
  Tensor g = store.grad("x");
  // d(sum)/dx[c, t] = number of frames mapped to t.
  const float expected[6] = {2, 0, 1, 2, 0, 1};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(g.data<float>()[i], expected[i]) << i;

  // A second backward accumulates (gradient accumulation over micro-batches).
  {
    autograd::RecordingScope rec(tape);
    Tensor y = ops::gather_frames(store.get("x"), {1, -1, -1, -1}, 4);
    tape.backward(ops::sum(ops::sum(ops::sum(y, 2, false), 1, false), 0, false));
  }
  EXPECT_EQ(g.data<float>()[1], 1.0f);
  EXPECT_EQ(g.data<float>()[4], 1.0f);
  EXPECT_EQ(g.data<float>()[0], 2.0f);
  store.zero_grad();
  EXPECT_EQ(g.data<float>()[0], 0.0f);
}

TEST(Autograd, NoGradScopeRecordsNothing) {
  ParameterStore store;
  store.declare("x", {1, 1, 2});
  store.finalize();
  store.enable_grad([](const std::string&) { return true; });
  autograd::Tape tape;
  autograd::RecordingScope rec(tape);
  {
    autograd::NoGradScope no_grad;
    Tensor y = ops::gather_frames(store.get("x"), {0, 1}, 2);
    EXPECT_FALSE(y.requires_grad());
  }
  EXPECT_EQ(tape.size(), 0u);
  Tensor y = ops::gather_frames(store.get("x").detach(), {0, 1}, 2);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(tape.size(), 0u);
}

// The length regulator's backward (a scatter-add) against central differences in double, with
// L = sum(y * r) for a fixed random r. gather is linear, so the only error is rounding: 1e-9 relative.
TEST(Autograd, GatherFramesBackwardMatchesFiniteDifferences) {
  const int64_t B = 2, C = 3, T = 4, F = 7;
  const std::vector<int32_t> index = {0, 0, 1, 3, 3, 3, -1, 2, 2, 2, 0, 1, -1, -1};
  Tensor x64 = Tensor::empty({B, C, T}, DType::F64);
  Tensor r = Tensor::empty({B, C, F}, DType::F64);
  for (int64_t i = 0; i < x64.numel(); ++i) x64.data<double>()[i] = std::sin(0.7 * static_cast<double>(i) + 0.3);
  for (int64_t i = 0; i < r.numel(); ++i) r.data<double>()[i] = std::cos(1.3 * static_cast<double>(i) + 0.1);
  auto loss = [&](const Tensor& x) {
    Tensor y = ops::gather_frames(x, index, F);
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i) s += y.data<double>()[i] * r.data<double>()[i];
    return s;
  };
  // Analytic gradient through the tape: a leaf slot on a double tensor.
  auto slot = std::make_shared<autograd::GradSlot>();
  slot->shape = x64.shape();
  slot->dtype = DType::F64;
  Tensor leaf = x64.clone();
  leaf.set_grad_slot(slot);
  autograd::Tape tape;
  {
    autograd::RecordingScope rec(tape);
    Tensor y = ops::gather_frames(leaf, index, F);
    Tensor weighted = ops::mul(y, r);
    Tensor l = ops::sum(ops::sum(ops::sum(weighted, 2, false), 1, false), 0, false);
    tape.backward(l);
  }
  const Tensor numeric = vitscuda::testing::numeric_gradient(x64, [&] { return loss(x64); });
  for (int64_t i = 0; i < x64.numel(); ++i) {
    const double analytic = slot->grad.data<double>()[i];
    EXPECT_NEAR(analytic, numeric.data<double>()[i], 1e-9 * std::max(1.0, std::fabs(numeric.data<double>()[i])))
        << "element " << i;
  }
}
