// Kernel tests of conv_transpose1d (kernels/conv_transpose1d.h): the forward against the direct
// scatter of ConvTranspose1d's definition, the backward against central differences
// (kernel_checks.h) and by adjoint identities at several im2col tiles, and the f32 backward against
// the f64 one. The op is linear in each input: the central difference only carries rounding (~1e-9).
#include <gtest/gtest.h>

#include "kernels/conv_transpose1d.h"
#include "kernel_checks.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

// ------------------------------------------------------------------ naive reference

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
TEST(ConvTranspose1dKernel, FloatBackwardMatchesDouble) {
  uint32_t seed = 2610;  // after the 11 conv1d shapes' seeds, as when both ran in one test
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

}  // namespace
}  // namespace vitscuda::kernels
