// Kernel tests of the layer norms and weight norm (kernels/norm.h): forwards against two-pass
// double-precision references, backwards against central differences of L = sum(y * r) (a plain sum
// would give a zero gradient through the mean-subtracting norms; kernel_checks.h), the parallel
// channel backward against the serial row norm, and the f32 backwards against the f64 ones. The
// norms are smooth: truncation error ~ h^2 |L'''| ~ 1e-12 next to the 1e-6 tolerance.
#include <gtest/gtest.h>

#include "kernel_checks.h"
#include "kernels/norm.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

// ------------------------------------------------------------------ naive references

Vec layer_norm_reference(const Vec& x, const Vec& gamma, const Vec& beta, int rows, int C, double eps) {
  Vec y(x.size());
  for (int r = 0; r < rows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int c = 0; c < C; ++c) mean += x[r * C + c];
    mean /= C;
    for (int c = 0; c < C; ++c) var += (x[r * C + c] - mean) * (x[r * C + c] - mean);
    var /= C;
    for (int c = 0; c < C; ++c) y[r * C + c] = (x[r * C + c] - mean) / std::sqrt(var + eps) * gamma[c] + beta[c];
  }
  return y;
}

// [B, C, T] -> [B, T, C] and back, so the channel norm can be checked with the row norm.
Vec swap_last_two(const Vec& x, int B, int rows, int cols) {
  Vec y(x.size());
  for (int b = 0; b < B; ++b)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        y[(static_cast<size_t>(b) * cols + c) * rows + r] = x[(static_cast<size_t>(b) * rows + r) * cols + c];
  return y;
}

Vec weight_norm_reference(const Vec& g, const Vec& v, int rows, int n) {
  Vec w(v.size());
  for (int o = 0; o < rows; ++o) {
    double sq = 0.0;
    for (int j = 0; j < n; ++j) sq += v[o * n + j] * v[o * n + j];
    for (int j = 0; j < n; ++j) w[o * n + j] = g[o] * v[o * n + j] / std::sqrt(sq);
  }
  return w;
}

// ------------------------------------------------------------------ layer norms

TEST(LayerNormKernel, ForwardMatchesTwoPassReference) {
  const int rows = 9, C = 13;
  const double eps = 1e-5;
  // Offset inputs: a one-pass E[x^2] - E[x]^2 variance would lose digits here.
  Vec x = random_vector(rows * C, 51, 0.5);
  for (double& v : x) v += 100.0;
  const Vec gamma = random_vector(C, 52), beta = random_vector(C, 53);
  const Vec ref = layer_norm_reference(x, gamma, beta, rows, C, eps);
  Vec y(x.size());
  layer_norm_forward_cpu<double>(x.data(), gamma.data(), beta.data(), y.data(), rows, C, eps);
  EXPECT_LT(relative_max_error(y, ref), 1e-12);
  std::vector<float> x32 = cast<float>(x), g32 = cast<float>(gamma), b32 = cast<float>(beta), y32(x.size());
  layer_norm_forward_cpu<float>(x32.data(), g32.data(), b32.data(), y32.data(), rows, C, eps);
  // The f32 inputs near 100 carry absolute rounding 4e-6, i.e. 1e-5 of the 0.5 spread.
  EXPECT_LT(relative_max_error(to_double(y32),
                               layer_norm_reference(to_double(x32), to_double(g32), to_double(b32), rows, C, eps)),
            1e-5);
}

TEST(LayerNormKernel, ChannelVariantEqualsRowNormOfTransposedInput) {
  // T = 600 spans three 256-column blocks.
  for (const int T_len : {9, 600}) {
    const int B = 2, C = 5;
    const double eps = 1e-4;
    const Vec x = random_vector(B * C * T_len, 61), gamma = random_vector(C, 62), beta = random_vector(C, 63);
    Vec y(x.size());
    layer_norm_channels_forward_cpu<double>(x.data(), gamma.data(), beta.data(), y.data(), B, C, T_len, eps);
    const Vec ref =
        swap_last_two(layer_norm_reference(swap_last_two(x, B, C, T_len), gamma, beta, B * T_len, C, eps), B, T_len, C);
    EXPECT_LT(relative_max_error(y, ref), 1e-13) << "T=" << T_len;
  }
}

TEST(LayerNormKernel, BackwardMatchesFiniteDifferences) {
  const int rows = 5, C = 7;
  const double eps = 1e-5;
  Vec x = random_vector(rows * C, 71), gamma = random_vector(C, 72), beta = random_vector(C, 73);
  const Vec r = random_vector(rows * C, 74);
  auto loss = [&] {
    Vec y(x.size());
    layer_norm_forward_cpu<double>(x.data(), gamma.data(), beta.data(), y.data(), rows, C, eps);
    return dot(y, r);
  };
  AccumulatedGrad dx(x.size(), 75), dg(C, 76), db(C, 77);
  layer_norm_backward_cpu<double>(x.data(), gamma.data(), r.data(), dx.data(), dg.data(), db.data(), rows, C, eps);
  EXPECT_LT(relative_max_error(dx.added(), numeric_gradient(&x, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(dg.added(), numeric_gradient(&gamma, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&beta, loss)), kGradTolerance);
}

TEST(LayerNormKernel, ChannelBackwardMatchesFiniteDifferences) {
  // T = 300 spans two column blocks; also run with enough work for the parallel path.
  for (const int T_len : {9, 300}) {
    const int B = 2, C = 4;
    const double eps = 1e-5;
    Vec x = random_vector(B * C * T_len, 81), gamma = random_vector(C, 82), beta = random_vector(C, 83);
    const Vec r = random_vector(B * C * T_len, 84);
    auto loss = [&] {
      Vec y(x.size());
      layer_norm_channels_forward_cpu<double>(x.data(), gamma.data(), beta.data(), y.data(), B, C, T_len, eps);
      return dot(y, r);
    };
    AccumulatedGrad dx(x.size(), 85), dg(C, 86), db(C, 87);
    layer_norm_channels_backward_cpu<double>(x.data(), gamma.data(), r.data(), dx.data(), dg.data(), db.data(), B, C,
                                             T_len, eps);
    EXPECT_LT(relative_max_error(dx.added(), numeric_gradient(&x, loss)), kGradTolerance) << "T=" << T_len;
    EXPECT_LT(relative_max_error(dg.added(), numeric_gradient(&gamma, loss)), kGradTolerance) << "T=" << T_len;
    EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&beta, loss)), kGradTolerance) << "T=" << T_len;
  }
}

TEST(LayerNormKernel, ChannelBackwardParallelPathEqualsSerialSum) {
  // Large enough for OpenMP threads with private parameter-gradient partials: dgamma must be
  // the same as the row norm's backward over the transposed layout.
  const int B = 3, C = 64, T_len = 1000;
  const double eps = 1e-5;
  const Vec x = random_vector(B * C * T_len, 91), gamma = random_vector(C, 92), r = random_vector(B * C * T_len, 93);
  Vec dx(x.size(), 0.0), dg(C, 0.0), db(C, 0.0);
  layer_norm_channels_backward_cpu<double>(x.data(), gamma.data(), r.data(), dx.data(), dg.data(), db.data(), B, C,
                                           T_len, eps);
  const Vec xt = swap_last_two(x, B, C, T_len), rt = swap_last_two(r, B, C, T_len);
  Vec dxt(x.size(), 0.0), dg_ref(C, 0.0), db_ref(C, 0.0);
  layer_norm_backward_cpu<double>(xt.data(), gamma.data(), rt.data(), dxt.data(), dg_ref.data(), db_ref.data(),
                                  B * T_len, C, eps);
  EXPECT_LT(relative_max_error(dx, swap_last_two(dxt, B, T_len, C)), 1e-12);
  EXPECT_LT(relative_max_error(dg, dg_ref), 1e-12);
  EXPECT_LT(relative_max_error(db, db_ref), 1e-12);
}

TEST(NormBackwardKernels, FloatMatchesDouble) {
  const int B = 2, C = 6, T_len = 300;
  const double eps = 1e-5;
  const Vec x = to_double(cast<float>(random_vector(B * C * T_len, 151)));
  const Vec gamma = to_double(cast<float>(random_vector(C, 152))),
            r = to_double(cast<float>(random_vector(B * C * T_len, 153)));
  Vec dx(x.size(), 0.0), dg(C, 0.0), db(C, 0.0);
  layer_norm_channels_backward_cpu<double>(x.data(), gamma.data(), r.data(), dx.data(), dg.data(), db.data(), B, C,
                                           T_len, eps);
  std::vector<float> x32 = cast<float>(x), g32 = cast<float>(gamma), r32 = cast<float>(r);
  std::vector<float> dx32(x.size(), 0.f), dg32(C, 0.f), db32(C, 0.f);
  layer_norm_channels_backward_cpu<float>(x32.data(), g32.data(), r32.data(), dx32.data(), dg32.data(), db32.data(), B,
                                          C, T_len, eps);
  // Statistics accumulate in double in both; only the final roundings to float differ.
  EXPECT_LT(relative_max_error(to_double(dx32), dx), 1e-6);
  EXPECT_LT(relative_max_error(to_double(dg32), dg), 1e-6);
  EXPECT_LT(relative_max_error(to_double(db32), db), 1e-6);

  const int rows = 5, n = 12;
  const Vec g = to_double(cast<float>(random_vector(rows, 154))),
            v = to_double(cast<float>(random_vector(rows * n, 155)));
  const Vec dw = to_double(cast<float>(random_vector(rows * n, 156)));
  Vec dgn(rows, 0.0), dv(rows * n, 0.0);
  weight_norm_backward_cpu<double>(g.data(), v.data(), dw.data(), dgn.data(), dv.data(), rows, n);
  std::vector<float> gn32 = cast<float>(g), v32 = cast<float>(v), dw32 = cast<float>(dw), dgn32(rows, 0.f),
                     dv32(rows * n, 0.f);
  weight_norm_backward_cpu<float>(gn32.data(), v32.data(), dw32.data(), dgn32.data(), dv32.data(), rows, n);
  EXPECT_LT(relative_max_error(to_double(dgn32), dgn), 1e-6);
  EXPECT_LT(relative_max_error(to_double(dv32), dv), 1e-6);
}

// ------------------------------------------------------------------ weight norm

TEST(WeightNormKernel, ForwardMatchesDefinition) {
  const int rows = 4, n = 6;
  const Vec g = random_vector(rows, 101), v = random_vector(rows * n, 102);
  Vec w(v.size());
  weight_norm_forward_cpu<double>(g.data(), v.data(), w.data(), rows, n);
  EXPECT_LT(relative_max_error(w, weight_norm_reference(g, v, rows, n)), 1e-14);
  // Each row's norm equals |g|.
  for (int o = 0; o < rows; ++o) {
    double sq = 0.0;
    for (int j = 0; j < n; ++j) sq += w[o * n + j] * w[o * n + j];
    EXPECT_NEAR(std::sqrt(sq), std::fabs(g[o]), 1e-14);
  }
}

TEST(WeightNormKernel, BackwardMatchesFiniteDifferences) {
  const int rows = 3, n = 8;  // e.g. v [3, 2, 4]
  Vec g = random_vector(rows, 111), v = random_vector(rows * n, 112);
  const Vec r = random_vector(rows * n, 113);
  auto loss = [&] {
    Vec w(v.size());
    weight_norm_forward_cpu<double>(g.data(), v.data(), w.data(), rows, n);
    return dot(w, r);
  };
  AccumulatedGrad dg(g.size(), 114), dv(v.size(), 115);
  weight_norm_backward_cpu<double>(g.data(), v.data(), r.data(), dg.data(), dv.data(), rows, n);
  EXPECT_LT(relative_max_error(dg.added(), numeric_gradient(&g, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(dv.added(), numeric_gradient(&v, loss)), kGradTolerance);
}

}  // namespace
}  // namespace vitscuda::kernels
