// Kernel tests for conv1d, conv_transpose1d, matmul/linear, layer norms, weight norm and
// embedding: forwards against naive double-precision loops, backwards against central
// finite differences in double precision, plus adjoint (dot-product) checks at shapes large
// enough to span several im2col tiles.
//
// Gradient checks use L = sum(y * r) with a fixed random r (a plain sum would give a zero
// gradient through the mean-subtracting norms and hide errors there), central differences
// with h = 1e-6 and the relative error max|numeric - analytic| / max|analytic| < 1e-6.
// Why 1e-6 holds with margin: the convolutions, products and embedding are linear in each
// input, so the central difference has no truncation error, only rounding of L: about
// 1e-16 * |L| / h ~ 1e-9 for |L| ~ 10. The norms are smooth, with truncation error
// ~ h^2 * |L'''| ~ 1e-12. A wrong index or a missing term gives errors of order 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/alignment.h"
#include "kernels/conv1d.h"
#include "kernels/conv_transpose1d.h"
#include "kernels/embedding.h"
#include "kernels/error.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"

namespace vitscuda::kernels {
namespace {

using Vec = std::vector<double>;

Vec random_vector(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (double& x : v) x = normal(gen);
  return v;
}

template <typename T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// max|a - b| / max|b|.
double relative_max_error(const Vec& a, const Vec& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return den > 0.0 ? num / den : num;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central-difference gradient of loss() with respect to every element of *param.
Vec numeric_gradient(Vec* param, const std::function<double()>& loss) {
  constexpr double h = 1e-6;
  Vec grad(param->size());
  for (size_t i = 0; i < param->size(); ++i) {
    const double saved = (*param)[i];
    (*param)[i] = saved + h;
    const double plus = loss();
    (*param)[i] = saved - h;
    const double minus = loss();
    (*param)[i] = saved;
    grad[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

constexpr double kGradTolerance = 1e-6;

// Runs `backward` on gradient buffers pre-filled with random values and returns what it
// added, so that the checks also prove the kernels accumulate instead of overwrite.
struct AccumulatedGrad {
  Vec buffer, initial;
  explicit AccumulatedGrad(size_t n, uint32_t seed) : buffer(random_vector(n, seed)), initial(buffer) {}
  double* data() { return buffer.data(); }
  Vec added() const {
    Vec d(buffer.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = buffer[i] - initial[i];
    return d;
  }
};

// ------------------------------------------------------------------ naive references

struct ConvShape {
  int B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups;
  int64_t Tout() const { return conv1d_output_length(Tin, K, stride, pad_left, pad_right, dilation); }
  std::string str() const {
    return "B=" + std::to_string(B) + " Cin=" + std::to_string(Cin) + " Tin=" + std::to_string(Tin) +
           " Cout=" + std::to_string(Cout) + " K=" + std::to_string(K) + " s=" + std::to_string(stride) + " pad=(" +
           std::to_string(pad_left) + "," + std::to_string(pad_right) + ") d=" + std::to_string(dilation) +
           " g=" + std::to_string(groups);
  }
};

Vec conv1d_reference(const Vec& x, const Vec& w, const Vec* b, const ConvShape& s) {
  const int64_t Tout = s.Tout();
  const int cin_g = s.Cin / s.groups, cout_g = s.Cout / s.groups;
  Vec y(static_cast<size_t>(s.B) * s.Cout * Tout);
  for (int n = 0; n < s.B; ++n)
    for (int o = 0; o < s.Cout; ++o)
      for (int64_t t = 0; t < Tout; ++t) {
        double acc = b ? (*b)[o] : 0.0;
        const int g = o / cout_g;
        for (int i = 0; i < cin_g; ++i)
          for (int k = 0; k < s.K; ++k) {
            const int64_t pos = t * s.stride + static_cast<int64_t>(k) * s.dilation - s.pad_left;
            if (pos < 0 || pos >= s.Tin) continue;
            acc += w[(static_cast<size_t>(o) * cin_g + i) * s.K + k] *
                   x[(static_cast<size_t>(n) * s.Cin + g * cin_g + i) * s.Tin + pos];
          }
        y[(static_cast<size_t>(n) * s.Cout + o) * Tout + t] = acc;
      }
  return y;
}

struct ConvTShape {
  int B, Cin, Tin, Cout, K, stride, padding;
  int64_t Tout() const { return conv_transpose1d_output_length(Tin, K, stride, padding); }
  std::string str() const {
    return "B=" + std::to_string(B) + " Cin=" + std::to_string(Cin) + " Tin=" + std::to_string(Tin) +
           " Cout=" + std::to_string(Cout) + " K=" + std::to_string(K) + " s=" + std::to_string(stride) +
           " p=" + std::to_string(padding);
  }
};

// Direct scatter, as the definition of ConvTranspose1d reads.
Vec conv_transpose1d_reference(const Vec& x, const Vec& w, const Vec* b, const ConvTShape& s) {
  const int64_t Tout = s.Tout();
  Vec y(static_cast<size_t>(s.B) * s.Cout * Tout, 0.0);
  for (int n = 0; n < s.B; ++n) {
    for (int o = 0; o < s.Cout; ++o)
      for (int64_t t = 0; t < Tout; ++t) y[(static_cast<size_t>(n) * s.Cout + o) * Tout + t] = b ? (*b)[o] : 0.0;
    for (int i = 0; i < s.Cin; ++i)
      for (int t = 0; t < s.Tin; ++t)
        for (int o = 0; o < s.Cout; ++o)
          for (int k = 0; k < s.K; ++k) {
            const int64_t pos = static_cast<int64_t>(t) * s.stride + k - s.padding;
            if (pos < 0 || pos >= Tout) continue;
            y[(static_cast<size_t>(n) * s.Cout + o) * Tout + pos] +=
                x[(static_cast<size_t>(n) * s.Cin + i) * s.Tin + t] *
                w[(static_cast<size_t>(i) * s.Cout + o) * s.K + k];
          }
  }
  return y;
}

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

// ------------------------------------------------------------------ conv1d

const std::vector<ConvShape>& conv_shapes() {
  static const std::vector<ConvShape> shapes = {
      {2, 3, 11, 4, 3, 1, 1, 1, 1, 1},  // plain "same" convolution, odd length, batch 2
      {1, 2, 9, 3, 3, 1, 4, 2, 3, 1},   // dilation 3, asymmetric padding
      {2, 3, 13, 2, 4, 2, 1, 0, 1, 1},  // stride 2, even kernel
      {2, 4, 10, 6, 3, 1, 2, 2, 2, 2},  // groups 2, dilation 2
      {2, 3, 10, 3, 5, 1, 2, 2, 1, 3},  // depthwise (VITS's DDSConv)
      {1, 2, 12, 4, 3, 2, 2, 1, 2, 2},  // depthwise with 2 outputs per channel, stride 2, dilation 2
      {2, 5, 7, 3, 1, 1, 0, 0, 1, 1},   // 1x1 (WaveNet res/skip)
      {1, 4, 9, 2, 1, 2, 0, 1, 1, 1},   // 1x1 with stride and padding (general path)
      {1, 3, 8, 2, 3, 1, 2, 0, 1, 1},   // causal padding
      {2, 6, 15, 4, 5, 3, 3, 1, 1, 2},  // groups 2 with stride 3
      {1, 2, 4, 3, 5, 1, 2, 2, 1, 1},   // kernel longer than the input
  };
  return shapes;
}

template <typename T>
Vec run_conv1d(const Vec& x, const Vec& w, const Vec* b, const ConvShape& s) {
  std::vector<T> xt = cast<T>(x), wt = cast<T>(w), bt = b ? cast<T>(*b) : std::vector<T>();
  std::vector<T> y(static_cast<size_t>(s.B) * s.Cout * s.Tout(), T(-7));  // garbage: the forward overwrites
  conv1d_forward_cpu<T>(xt.data(), wt.data(), b ? bt.data() : nullptr, y.data(), s.B, s.Cin, s.Tin, s.Cout, s.K,
                        s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
  return Vec(y.begin(), y.end());
}

void conv_inputs(const ConvShape& s, uint32_t seed, Vec* x, Vec* w, Vec* b) {
  *x = random_vector(static_cast<size_t>(s.B) * s.Cin * s.Tin, seed);
  *w = random_vector(static_cast<size_t>(s.Cout) * (s.Cin / s.groups) * s.K, seed + 1);
  *b = random_vector(static_cast<size_t>(s.Cout), seed + 2);
}

TEST(Conv1dKernel, ForwardMatchesNaiveLoop) {
  std::vector<ConvShape> shapes = conv_shapes();
  // Several im2col tiles (rows = 256 * 8 = 2048 -> 512-column tiles) and a 1x1 with long T.
  shapes.push_back({1, 256, 1100, 4, 8, 1, 3, 4, 1, 1});
  shapes.push_back({2, 64, 700, 8, 11, 1, 10, 10, 2, 1});
  shapes.push_back({1, 16, 3000, 8, 1, 1, 0, 0, 1, 1});
  uint32_t seed = 100;
  for (const ConvShape& s : shapes) {
    Vec x, w, b;
    conv_inputs(s, seed += 10, &x, &w, &b);
    const Vec ref = conv1d_reference(x, w, &b, s);
    // f64: the same sums in another order; relative error at the level of a few ulps.
    EXPECT_LT(relative_max_error(run_conv1d<double>(x, w, &b, s), ref), 1e-13) << s.str();
    EXPECT_LT(relative_max_error(run_conv1d<double>(x, w, nullptr, s), conv1d_reference(x, w, nullptr, s)), 1e-13)
        << s.str();
    // f32 against the double loop over the same f32-rounded inputs: at most ~2000 products of
    // O(1) numbers summed in float, well within 1e-5 of the largest output.
    const Vec x32 = to_double(cast<float>(x)), w32 = to_double(cast<float>(w)), b32 = to_double(cast<float>(b));
    EXPECT_LT(relative_max_error(run_conv1d<float>(x, w, &b, s), conv1d_reference(x32, w32, &b32, s)), 1e-5) << s.str();
  }
}

TEST(Conv1dKernel, OutputLengthFollowsTorchFormula) {
  EXPECT_EQ(conv1d_output_length(10, 3, 1, 1, 1, 1), 10);
  EXPECT_EQ(conv1d_output_length(13, 4, 2, 1, 0, 1), 6);  // floor((13 + 1 - 4) / 2) + 1
  EXPECT_EQ(conv1d_output_length(9, 3, 1, 4, 2, 3), 9);   // 9 + 6 - 7 + 1
  EXPECT_EQ(conv1d_output_length(2, 5, 1, 0, 0, 1), 0);   // input shorter than the kernel
}

TEST(Conv1dKernel, RejectsInvalidArguments) {
  std::vector<double> x(24), w(24), y(64);
  EXPECT_THROW(conv1d_forward_cpu<double>(x.data(), w.data(), nullptr, y.data(), 1, 3, 8, 4, 3, 1, 1, 1, 1, 2),
               Error);  // groups 2 does not divide Cin 3
  EXPECT_THROW(conv1d_forward_cpu<double>(x.data(), w.data(), nullptr, y.data(), 1, 2, 2, 2, 5, 1, 0, 0, 1, 1),
               Error);  // input shorter than the kernel
  EXPECT_THROW(conv1d_forward_cpu<double>(x.data(), w.data(), nullptr, y.data(), 1, 2, 8, 2, 3, 0, 1, 1, 1, 1),
               Error);  // stride 0
}

TEST(Conv1dKernel, BackwardMatchesFiniteDifferences) {
  uint32_t seed = 500;
  for (const ConvShape& s : conv_shapes()) {
    SCOPED_TRACE(s.str());
    Vec x, w, b;
    conv_inputs(s, seed += 10, &x, &w, &b);
    const Vec r = random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5);
    auto loss = [&] { return dot(run_conv1d<double>(x, w, &b, s), r); };

    AccumulatedGrad dx(x.size(), seed + 6), dw(w.size(), seed + 7), db(b.size(), seed + 8);
    conv1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), s.B, s.Cin, s.Tin,
                                s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    EXPECT_LT(relative_max_error(dx.added(), numeric_gradient(&x, loss)), kGradTolerance) << "dx";
    EXPECT_LT(relative_max_error(dw.added(), numeric_gradient(&w, loss)), kGradTolerance) << "dw";
    EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&b, loss)), kGradTolerance) << "db";

    // Each gradient alone (the others nullptr) is the same.
    Vec dx_only(x.size(), 0.0), dw_only(w.size(), 0.0);
    conv1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx_only.data(), nullptr, nullptr, s.B, s.Cin, s.Tin,
                                s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    conv1d_backward_cpu<double>(x.data(), w.data(), r.data(), nullptr, dw_only.data(), nullptr, s.B, s.Cin, s.Tin,
                                s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    EXPECT_LT(relative_max_error(dx_only, dx.added()), 1e-14);
    EXPECT_LT(relative_max_error(dw_only, dw.added()), 1e-14);
  }
}

// At shapes spanning several tiles, finite differences are too slow; the adjoint identities
// <conv(x; w), r> = <x, dx(r)> = <w, dw(r)> (no bias) check the backward instead.
TEST(Conv1dKernel, BackwardSatisfiesAdjointIdentityOnLargeShapes) {
  const std::vector<ConvShape> shapes = {
      {1, 256, 1100, 4, 8, 1, 3, 4, 1, 1},
      {2, 64, 700, 8, 11, 2, 10, 3, 2, 1},
      {1, 16, 3000, 8, 1, 1, 0, 0, 1, 1},
      {2, 96, 900, 96, 3, 1, 1, 1, 1, 96},  // depthwise, parallel path
  };
  uint32_t seed = 900;
  for (const ConvShape& s : shapes) {
    Vec x, w, b;
    conv_inputs(s, seed += 10, &x, &w, &b);
    const Vec r = random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5);
    const double forward = dot(run_conv1d<double>(x, w, nullptr, s), r);
    Vec dx(x.size(), 0.0), dw(w.size(), 0.0);
    conv1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), nullptr, s.B, s.Cin, s.Tin, s.Cout,
                                s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    // Sums of ~1e6 products of O(1) terms in different orders: agreement to ~1e-12 relative.
    EXPECT_NEAR(dot(x, dx), forward, 1e-10 * std::fabs(forward) + 1e-9) << s.str();
    EXPECT_NEAR(dot(w, dw), forward, 1e-10 * std::fabs(forward) + 1e-9) << s.str();
  }
}

// ------------------------------------------------------------------ conv_transpose1d

const std::vector<ConvTShape>& conv_transpose_shapes() {
  static const std::vector<ConvTShape> shapes = {
      {2, 4, 5, 2, 16, 8, 4},  // HiFi-GAN upsample pattern (k=16, s=8, p=4) at small channel counts
      {1, 3, 7, 2, 3, 1, 1},   // stride 1
      {1, 2, 6, 3, 5, 3, 0},   // kernel not a multiple of the stride
      {2, 3, 6, 5, 4, 2, 1},   // HiFi-GAN k=4, s=2, p=1
      {1, 2, 5, 2, 2, 3, 0},   // kernel shorter than the stride: gaps in the output
      {1, 3, 4, 2, 11, 5, 3},  // HiFi-GAN k=11, s=5, p=3 (odd kernel)
  };
  return shapes;
}

template <typename T>
Vec run_conv_transpose1d(const Vec& x, const Vec& w, const Vec* b, const ConvTShape& s) {
  std::vector<T> xt = cast<T>(x), wt = cast<T>(w), bt = b ? cast<T>(*b) : std::vector<T>();
  std::vector<T> y(static_cast<size_t>(s.B) * s.Cout * s.Tout(), T(-7));
  conv_transpose1d_forward_cpu<T>(xt.data(), wt.data(), b ? bt.data() : nullptr, y.data(), s.B, s.Cin, s.Tin, s.Cout,
                                  s.K, s.stride, s.padding);
  return Vec(y.begin(), y.end());
}

void conv_transpose_inputs(const ConvTShape& s, uint32_t seed, Vec* x, Vec* w, Vec* b) {
  *x = random_vector(static_cast<size_t>(s.B) * s.Cin * s.Tin, seed);
  *w = random_vector(static_cast<size_t>(s.Cin) * s.Cout * s.K, seed + 1);
  *b = random_vector(static_cast<size_t>(s.Cout), seed + 2);
}

TEST(ConvTranspose1dKernel, ForwardMatchesNaiveScatter) {
  std::vector<ConvTShape> shapes = conv_transpose_shapes();
  // Cout*K = 4096 rows -> 256-column tiles: three tiles over 600 input columns.
  shapes.push_back({1, 8, 600, 256, 16, 8, 4});
  shapes.push_back({2, 32, 300, 16, 4, 2, 1});
  uint32_t seed = 1300;
  for (const ConvTShape& s : shapes) {
    Vec x, w, b;
    conv_transpose_inputs(s, seed += 10, &x, &w, &b);
    EXPECT_EQ(s.Tout(), (s.Tin - 1) * s.stride - 2 * s.padding + s.K);
    EXPECT_LT(relative_max_error(run_conv_transpose1d<double>(x, w, &b, s), conv_transpose1d_reference(x, w, &b, s)),
              1e-13)
        << s.str();
    EXPECT_LT(relative_max_error(run_conv_transpose1d<double>(x, w, nullptr, s),
                                 conv_transpose1d_reference(x, w, nullptr, s)),
              1e-13)
        << s.str();
    const Vec x32 = to_double(cast<float>(x)), w32 = to_double(cast<float>(w)), b32 = to_double(cast<float>(b));
    EXPECT_LT(
        relative_max_error(run_conv_transpose1d<float>(x, w, &b, s), conv_transpose1d_reference(x32, w32, &b32, s)),
        1e-5)
        << s.str();
  }
}

TEST(ConvTranspose1dKernel, BackwardMatchesFiniteDifferences) {
  uint32_t seed = 1700;
  for (const ConvTShape& s : conv_transpose_shapes()) {
    SCOPED_TRACE(s.str());
    Vec x, w, b;
    conv_transpose_inputs(s, seed += 10, &x, &w, &b);
    const Vec r = random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5);
    auto loss = [&] { return dot(run_conv_transpose1d<double>(x, w, &b, s), r); };
    AccumulatedGrad dx(x.size(), seed + 6), dw(w.size(), seed + 7), db(b.size(), seed + 8);
    conv_transpose1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), s.B, s.Cin,
                                          s.Tin, s.Cout, s.K, s.stride, s.padding);
    EXPECT_LT(relative_max_error(dx.added(), numeric_gradient(&x, loss)), kGradTolerance) << "dx";
    EXPECT_LT(relative_max_error(dw.added(), numeric_gradient(&w, loss)), kGradTolerance) << "dw";
    EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&b, loss)), kGradTolerance) << "db";
  }
}

TEST(ConvTranspose1dKernel, BackwardSatisfiesAdjointIdentityOnLargeShapes) {
  const std::vector<ConvTShape> shapes = {{1, 8, 600, 256, 16, 8, 4}, {2, 32, 300, 16, 4, 2, 1}};
  uint32_t seed = 2100;
  for (const ConvTShape& s : shapes) {
    Vec x, w, b;
    conv_transpose_inputs(s, seed += 10, &x, &w, &b);
    const Vec r = random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5);
    const double forward = dot(run_conv_transpose1d<double>(x, w, nullptr, s), r);
    Vec dx(x.size(), 0.0), dw(w.size(), 0.0);
    conv_transpose1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), nullptr, s.B, s.Cin,
                                          s.Tin, s.Cout, s.K, s.stride, s.padding);
    EXPECT_NEAR(dot(x, dx), forward, 1e-10 * std::fabs(forward) + 1e-9) << s.str();
    EXPECT_NEAR(dot(w, dw), forward, 1e-10 * std::fabs(forward) + 1e-9) << s.str();
  }
}

// The f32 instantiations of the backward kernels against the f64 ones on the same
// (f32-representable) data: float sums over at most a few hundred O(1) products stay within
// 1e-5 of the largest gradient.
TEST(ConvBackwardKernels, FloatMatchesDouble) {
  uint32_t seed = 2500;
  for (const ConvShape& s : conv_shapes()) {
    Vec x, w, b;
    conv_inputs(s, seed += 10, &x, &w, &b);
    x = to_double(cast<float>(x));
    w = to_double(cast<float>(w));
    const Vec r = to_double(cast<float>(random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5)));
    Vec dx(x.size(), 0.0), dw(w.size(), 0.0), db(b.size(), 0.0);
    conv1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), s.B, s.Cin, s.Tin,
                                s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    std::vector<float> x32 = cast<float>(x), w32 = cast<float>(w), r32 = cast<float>(r);
    std::vector<float> dx32(x.size(), 0.f), dw32(w.size(), 0.f), db32(b.size(), 0.f);
    conv1d_backward_cpu<float>(x32.data(), w32.data(), r32.data(), dx32.data(), dw32.data(), db32.data(), s.B, s.Cin,
                               s.Tin, s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    EXPECT_LT(relative_max_error(to_double(dx32), dx), 1e-5) << s.str();
    EXPECT_LT(relative_max_error(to_double(dw32), dw), 1e-5) << s.str();
    EXPECT_LT(relative_max_error(to_double(db32), db), 1e-5) << s.str();
  }
  for (const ConvTShape& s : conv_transpose_shapes()) {
    Vec x, w, b;
    conv_transpose_inputs(s, seed += 10, &x, &w, &b);
    x = to_double(cast<float>(x));
    w = to_double(cast<float>(w));
    const Vec r = to_double(cast<float>(random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5)));
    Vec dx(x.size(), 0.0), dw(w.size(), 0.0), db(b.size(), 0.0);
    conv_transpose1d_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), s.B, s.Cin,
                                          s.Tin, s.Cout, s.K, s.stride, s.padding);
    std::vector<float> x32 = cast<float>(x), w32 = cast<float>(w), r32 = cast<float>(r);
    std::vector<float> dx32(x.size(), 0.f), dw32(w.size(), 0.f), db32(b.size(), 0.f);
    conv_transpose1d_backward_cpu<float>(x32.data(), w32.data(), r32.data(), dx32.data(), dw32.data(), db32.data(), s.B,
                                         s.Cin, s.Tin, s.Cout, s.K, s.stride, s.padding);
    EXPECT_LT(relative_max_error(to_double(dx32), dx), 1e-5) << s.str();
    EXPECT_LT(relative_max_error(to_double(dw32), dw), 1e-5) << s.str();
    EXPECT_LT(relative_max_error(to_double(db32), db), 1e-5) << s.str();
  }
}

// ------------------------------------------------------------------ matmul / linear

TEST(MatmulKernel, ForwardMatchesNaiveLoop) {
  struct Case {
    int batch, M, K, N;
  };
  for (const Case c : {Case{3, 4, 5, 2}, Case{1, 1, 7, 1}, Case{2, 33, 17, 65}, Case{4, 8, 0, 3}}) {
    const Vec a = random_vector(static_cast<size_t>(c.batch) * c.M * c.K, 11);
    const Vec b = random_vector(static_cast<size_t>(c.batch) * c.K * c.N, 12);
    Vec ref(static_cast<size_t>(c.batch) * c.M * c.N, 0.0);
    for (int i = 0; i < c.batch; ++i)
      for (int m = 0; m < c.M; ++m)
        for (int n = 0; n < c.N; ++n)
          for (int k = 0; k < c.K; ++k)
            ref[(static_cast<size_t>(i) * c.M + m) * c.N + n] +=
                a[(static_cast<size_t>(i) * c.M + m) * c.K + k] * b[(static_cast<size_t>(i) * c.K + k) * c.N + n];
    Vec out(ref.size(), -7.0);
    matmul_forward_cpu<double>(a.data(), b.data(), out.data(), c.batch, c.M, c.K, c.N);
    // An empty inner dimension gives exact zeros (the -7 fill must be gone).
    if (c.K == 0)
      for (double v : out) EXPECT_EQ(v, 0.0);
    else
      EXPECT_LT(relative_max_error(out, ref), 1e-13);
    std::vector<float> a32 = cast<float>(a), b32 = cast<float>(b), out32(ref.size());
    matmul_forward_cpu<float>(a32.data(), b32.data(), out32.data(), c.batch, c.M, c.K, c.N);
    if (c.K > 0) EXPECT_LT(relative_max_error(to_double(out32), ref), 1e-5);  // float rounding of inputs and sums
  }
}

TEST(MatmulKernel, BackwardMatchesFiniteDifferences) {
  const int batch = 3, M = 4, K = 5, N = 2;
  Vec a = random_vector(batch * M * K, 21), b = random_vector(batch * K * N, 22);
  const Vec r = random_vector(batch * M * N, 23);
  auto loss = [&] {
    Vec c(batch * M * N);
    matmul_forward_cpu<double>(a.data(), b.data(), c.data(), batch, M, K, N);
    return dot(c, r);
  };
  AccumulatedGrad da(a.size(), 24), db(b.size(), 25);
  matmul_backward_cpu<double>(a.data(), b.data(), r.data(), da.data(), db.data(), batch, M, K, N);
  EXPECT_LT(relative_max_error(da.added(), numeric_gradient(&a, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&b, loss)), kGradTolerance);
}

TEST(LinearKernel, ForwardMatchesNaiveLoop) {
  const int rows = 7, in = 6, out = 5;
  const Vec x = random_vector(rows * in, 31), w = random_vector(out * in, 32), b = random_vector(out, 33);
  for (const bool with_bias : {true, false}) {
    Vec ref(rows * out);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double acc = with_bias ? b[o] : 0.0;
        for (int i = 0; i < in; ++i) acc += x[r * in + i] * w[o * in + i];
        ref[r * out + o] = acc;
      }
    Vec y(rows * out, -7.0);
    linear_forward_cpu<double>(x.data(), w.data(), with_bias ? b.data() : nullptr, y.data(), rows, in, out);
    EXPECT_LT(relative_max_error(y, ref), 1e-14) << "bias " << with_bias;
  }
}

TEST(LinearKernel, BackwardMatchesFiniteDifferences) {
  const int rows = 6, in = 5, out = 3;
  Vec x = random_vector(rows * in, 41), w = random_vector(out * in, 42), b = random_vector(out, 43);
  const Vec r = random_vector(rows * out, 44);
  auto loss = [&] {
    Vec y(rows * out);
    linear_forward_cpu<double>(x.data(), w.data(), b.data(), y.data(), rows, in, out);
    return dot(y, r);
  };
  AccumulatedGrad dx(x.size(), 45), dw(w.size(), 46), db(b.size(), 47);
  linear_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), rows, in, out);
  EXPECT_LT(relative_max_error(dx.added(), numeric_gradient(&x, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(dw.added(), numeric_gradient(&w, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&b, loss)), kGradTolerance);
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

// ------------------------------------------------------------------ embedding

TEST(EmbeddingKernel, GathersRowsAndRejectsOutOfRangeIds) {
  const int64_t vocab = 6, C = 4;
  const Vec table = random_vector(vocab * C, 121);
  const std::vector<int32_t> ids = {3, 0, 5, 3, 1};
  Vec y(ids.size() * C);
  embedding_forward_cpu<double>(table.data(), ids.data(), y.data(), static_cast<int64_t>(ids.size()), vocab, C);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(y[i * C + c], table[ids[i] * C + c]);

  const std::vector<int32_t> bad = {1, 2, 6};
  try {
    embedding_forward_cpu<double>(table.data(), bad.data(), y.data(), 3, vocab, C);
    FAIL() << "id 6 of a 6-row table was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("id 6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("position 2"), std::string::npos) << msg;
  }
  const std::vector<int32_t> negative = {-1};
  EXPECT_THROW(embedding_forward_cpu<double>(table.data(), negative.data(), y.data(), 1, vocab, C), Error);
}

// ------------------------------------------------------------------ alignment gather

TEST(GatherFramesKernel, GathersFramesAndRejectsOutOfRangeIndices) {
  const int64_t B = 2, C = 3, T = 4, F = 5;
  const Vec x = random_vector(B * C * T, 141);
  const std::vector<int32_t> index = {0, 0, 1, 3, -1, 2, 2, 2, -1, -1};
  Vec y(B * C * F);
  gather_frames_cpu<double>(x.data(), index.data(), y.data(), B, C, T, F);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t f = 0; f < F; ++f) {
        const int32_t t = index[b * F + f];
        EXPECT_EQ(y[(b * C + c) * F + f], t < 0 ? 0.0 : x[(b * C + c) * T + t]) << b << " " << c << " " << f;
      }
  // An index past the input or below -1 is an error naming it and its position, forward and
  // backward (a read or write out of bounds otherwise).
  for (const int32_t bad : {4, -2}) {
    std::vector<int32_t> wrong = index;
    wrong[7] = bad;
    Vec dx(B * C * T, 0.0);
    for (const bool backward : {false, true}) {
      try {
        if (backward)
          gather_frames_backward_cpu<double>(y.data(), wrong.data(), dx.data(), B, C, T, F);
        else
          gather_frames_cpu<double>(x.data(), wrong.data(), y.data(), B, C, T, F);
        ADD_FAILURE() << "index " << bad << " of a " << T << "-frame input was accepted (backward " << backward << ")";
      } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("index " + std::to_string(bad) + " at 7 outside [-1, 4)"), std::string::npos) << msg;
      }
    }
    EXPECT_EQ(dx, Vec(B * C * T, 0.0)) << "a rejected backward must not have written";
  }
}

TEST(EmbeddingKernel, BackwardMatchesFiniteDifferences) {
  const int64_t vocab = 6, C = 4;
  Vec table = random_vector(vocab * C, 131);
  const std::vector<int32_t> ids = {3, 0, 5, 3, 1, 3, 0};  // repeats must add up; row 2 and 4 unused
  const int64_t n = static_cast<int64_t>(ids.size());
  const Vec r = random_vector(n * C, 132);
  auto loss = [&] {
    Vec y(n * C);
    embedding_forward_cpu<double>(table.data(), ids.data(), y.data(), n, vocab, C);
    return dot(y, r);
  };
  AccumulatedGrad dt(table.size(), 133);
  embedding_backward_cpu<double>(r.data(), ids.data(), dt.data(), n, vocab, C);
  EXPECT_LT(relative_max_error(dt.added(), numeric_gradient(&table, loss)), kGradTolerance);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(dt.added()[2 * C + c], 0.0);
    EXPECT_EQ(dt.added()[4 * C + c], 0.0);
  }
}

TEST(EmbeddingKernel, BackwardLargeTableMatchesSerialScatter) {
  // Enough work for the channel-split parallel path.
  const int64_t vocab = 50, C = 300, n = 400;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7) % vocab);
  const Vec dy = random_vector(n * C, 141);
  Vec dt(vocab * C, 0.0), ref(vocab * C, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < C; ++c) ref[ids[i] * C + c] += dy[i * C + c];
  embedding_backward_cpu<double>(dy.data(), ids.data(), dt.data(), n, vocab, C);
  EXPECT_EQ(dt, ref);  // same additions in the same order per element
}

}  // namespace
}  // namespace vitscuda::kernels
