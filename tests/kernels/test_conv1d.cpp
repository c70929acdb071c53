// Kernel tests of conv1d (kernels/conv1d.h): the forward against a naive double-precision loop, the
// backward against central differences (kernel_checks.h), plus adjoint (dot-product) checks at shapes
// large enough to span several im2col tiles, and the f32 instantiations against the f64 ones; each on
// every CPU path (oneDNN for float32, tap products, im2col).
// Why 1e-6 holds for the gradients: the convolution is linear in each input, so the central
// difference has no truncation error, only rounding of L (~1e-9); a wrong index gives O(1) errors.
#include <gtest/gtest.h>
#include <omp.h>

#include "common/error.h"
#include "kernel_checks.h"
#include "kernels/conv1d.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

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

// Every path the CPU convolution can take for a shape with several input channels per group: Auto (float32
// through oneDNN where it takes the shape; otherwise, and for double, tap products for stride 1 and >= 8 channels
// per group, im2col for the rest), and each of ours forced on every shape it can run (taps: stride 1; the
// others fall back to im2col), so all three are checked at every shape.
class Conv1dPaths : public ::testing::TestWithParam<Conv1dCpuPath> {
 protected:
  void SetUp() override { conv1d_set_cpu_path(GetParam()); }
  void TearDown() override { conv1d_set_cpu_path(Conv1dCpuPath::Auto); }
};

std::string path_name(const ::testing::TestParamInfo<Conv1dCpuPath>& info) {
  switch (info.param) {
    case Conv1dCpuPath::Taps: return "taps";
    case Conv1dCpuPath::Im2col: return "im2col";
    default: return "auto";
  }
}

INSTANTIATE_TEST_SUITE_P(CpuPaths, Conv1dPaths,
                         ::testing::Values(Conv1dCpuPath::Auto, Conv1dCpuPath::Taps, Conv1dCpuPath::Im2col), path_name);

TEST_P(Conv1dPaths, ForwardMatchesNaiveLoop) {
  std::vector<ConvShape> shapes = conv_shapes();
  // Several im2col tiles (rows = 256 * 8 = 2048 -> 512-column tiles) and a 1x1 with long T.
  shapes.push_back({1, 256, 1100, 4, 8, 1, 3, 4, 1, 1});
  shapes.push_back({2, 64, 700, 8, 11, 1, 10, 10, 2, 1});
  shapes.push_back({1, 16, 3000, 8, 1, 1, 0, 0, 1, 1});
  shapes.push_back({2, 32, 300, 24, 5, 1, 4, 0, 3, 2});  // groups with 16 channels each: taps under Auto
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

TEST_P(Conv1dPaths, BackwardMatchesFiniteDifferences) {
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
TEST_P(Conv1dPaths, BackwardSatisfiesAdjointIdentityOnLargeShapes) {
  const std::vector<ConvShape> shapes = {
      {1, 256, 1100, 4, 8, 1, 3, 4, 1, 1},
      {2, 64, 700, 8, 11, 2, 10, 3, 2, 1},
      {1, 16, 3000, 8, 1, 1, 0, 0, 1, 1},
      {2, 96, 900, 96, 3, 1, 1, 1, 1, 96},  // depthwise, parallel path
      {2, 48, 800, 40, 7, 1, 9, 9, 3, 1},   // stride 1, taps whose valid columns differ at both ends
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

// The f32 instantiations of the backward kernels against the f64 ones on the same
// (f32-representable) data: float sums over at most a few hundred O(1) products stay within
// 1e-5 of the largest gradient.
TEST_P(Conv1dPaths, FloatBackwardMatchesDouble) {
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
}

// With several threads and at least one sample per thread, the samples run in parallel (each gemm on its
// own thread) instead of one after the other with threaded gemms; one long sample's forward runs as column
// spans in parallel. The forward output and dx are summed by one thread each in the same order as with one
// thread, so they are identical (oneDNN too splits outputs across threads, never one output's sum); dw adds
// per-thread partial sums, so it differs by float rounding only (sums of ~5e4 O(1) products: 1e-5 relative).
// Runs whatever the machine's core count: OpenMP starts the threads asked for.
TEST_P(Conv1dPaths, SamplesInParallelMatchOneThread) {
  const std::vector<ConvShape> shapes = {
      {4, 24, 500, 16, 5, 1, 2, 2, 2, 1},   // taps under Auto
      {3, 4, 700, 8, 3, 1, 1, 1, 1, 1},     // im2col under Auto (4 channels)
      {4, 32, 400, 16, 3, 1, 1, 1, 1, 2},   // groups
      {1, 16, 3000, 12, 3, 1, 1, 1, 1, 1},  // one sample: its forward's columns in one span per thread
  };
  const int threads_before = omp_get_max_threads();
  uint32_t seed = 3100;
  for (const ConvShape& s : shapes) {
    SCOPED_TRACE(s.str());
    Vec x, w, b;
    conv_inputs(s, seed += 10, &x, &w, &b);
    const std::vector<float> x32 = cast<float>(x), w32 = cast<float>(w), b32 = cast<float>(b);
    const std::vector<float> r32 = cast<float>(random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5));
    struct Result {
      std::vector<float> y, dx, dw;
    };
    auto run = [&](int threads) {
      omp_set_num_threads(threads);
      Result out{std::vector<float>(r32.size()), std::vector<float>(x32.size(), 0.f),
                 std::vector<float>(w32.size(), 0.f)};
      conv1d_forward_cpu<float>(x32.data(), w32.data(), b32.data(), out.y.data(), s.B, s.Cin, s.Tin, s.Cout, s.K,
                                s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
      conv1d_backward_cpu<float>(x32.data(), w32.data(), r32.data(), out.dx.data(), out.dw.data(), nullptr, s.B,
                                 s.Cin, s.Tin, s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
      return out;
    };
    const Result one = run(1), two = run(2);
    omp_set_num_threads(threads_before);
    EXPECT_EQ(one.y, two.y);
    EXPECT_EQ(one.dx, two.dx);
    EXPECT_LT(relative_max_error(to_double(two.dw), to_double(one.dw)), 1e-5);
  }
}

// oneDNN runs float32 convolutions under Auto: it must actually run (not our kernels in its place), add its
// gradients onto what the buffers hold as our kernels do (the autograd accumulates), handle channel counts that
// are not a multiple of its channel block, groups, dilation and stride, and give the same bits on a repeat. Two
// threads whatever ctest's OMP_NUM_THREADS, so that the repeat covers a weight gradient summed across threads.
TEST(Conv1dOnednn, RunsAccumulatesAndRepeatsExactly) {
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(2);
  // Ungrouped stride-1 convolutions have JIT kernels for every x86-64 vector ISA oneDNN has (AVX-512, AVX2 and
  // SSE4.1 alike); with groups and dilation, or a stride, its backward has them with AVX-512 only, and on
  // other CPUs our kernels run those: checked for correctness here, not for where they ran.
  struct Case {
    ConvShape shape;
    bool runs_on_onednn_everywhere;
  };
  const std::vector<Case> cases = {
      {{2, 20, 300, 24, 5, 1, 2, 2, 1, 1}, true},   // channels not a multiple of 16 (a padded block)
      {{2, 32, 200, 32, 3, 1, 3, 3, 3, 2}, false},  // groups 2, dilation 3
      {{1, 64, 400, 48, 7, 1, 3, 3, 1, 1}, true},   // one sample
      {{2, 16, 99, 16, 3, 2, 1, 1, 1, 1}, false},   // stride 2
  };
  uint32_t seed = 4100;
  for (const auto& [s, runs_on_onednn] : cases) {
    SCOPED_TRACE(s.str());
    Vec x, w, b;
    conv_inputs(s, seed += 10, &x, &w, &b);
    const Vec x32 = to_double(cast<float>(x)), w32 = to_double(cast<float>(w)), b32 = to_double(cast<float>(b));
    const int64_t runs_before = conv1d_cpu_onednn_runs();
    EXPECT_LT(relative_max_error(run_conv1d<float>(x, w, &b, s), conv1d_reference(x32, w32, &b32, s)), 1e-5);
    if (runs_on_onednn) EXPECT_EQ(conv1d_cpu_onednn_runs(), runs_before + 1) << "the forward did not run on oneDNN";

    const std::vector<float> xf = cast<float>(x), wf = cast<float>(w);
    const std::vector<float> r = cast<float>(random_vector(static_cast<size_t>(s.B) * s.Cout * s.Tout(), seed + 5));
    auto backward = [&](std::vector<float>& dx, std::vector<float>& dw) {
      conv1d_backward_cpu<float>(xf.data(), wf.data(), r.data(), dx.data(), dw.data(), nullptr, s.B, s.Cin, s.Tin,
                                 s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    };
    std::vector<float> dx(x.size(), 0.f), dw(w.size(), 0.f), dx_again(x.size(), 0.f), dw_again(w.size(), 0.f);
    backward(dx, dw);
    if (runs_on_onednn) EXPECT_EQ(conv1d_cpu_onednn_runs(), runs_before + 2) << "the backward did not run on oneDNN";
    backward(dx_again, dw_again);
    EXPECT_EQ(dx, dx_again);
    EXPECT_EQ(dw, dw_again);

    // Against the double backward of our own kernels: float sums of at most a few hundred O(1) products.
    Vec dx_ref(x.size(), 0.0), dw_ref(w.size(), 0.0);
    const Vec r64 = to_double(r);
    conv1d_backward_cpu<double>(x32.data(), w32.data(), r64.data(), dx_ref.data(), dw_ref.data(), nullptr, s.B, s.Cin,
                                s.Tin, s.Cout, s.K, s.stride, s.pad_left, s.pad_right, s.dilation, s.groups);
    EXPECT_LT(relative_max_error(to_double(dx), dx_ref), 1e-5);
    EXPECT_LT(relative_max_error(to_double(dw), dw_ref), 1e-5);

    // Onto buffers that already hold O(1) values: what is added is the gradient, up to one float rounding of
    // each sum (1e-6 of the larger of the two).
    const std::vector<float> dx0 = cast<float>(random_vector(x.size(), seed + 6)),
                             dw0 = cast<float>(random_vector(w.size(), seed + 7));
    std::vector<float> dx_acc = dx0, dw_acc = dw0;
    backward(dx_acc, dw_acc);
    Vec dx_added(x.size()), dw_added(w.size());
    for (size_t i = 0; i < x.size(); ++i) dx_added[i] = double(dx_acc[i]) - dx0[i];
    for (size_t i = 0; i < w.size(); ++i) dw_added[i] = double(dw_acc[i]) - dw0[i];
    EXPECT_LT(relative_max_error(dx_added, to_double(dx)), 1e-5);
    EXPECT_LT(relative_max_error(dw_added, to_double(dw)), 1e-5);
  }
  omp_set_num_threads(threads_before);
}

}  // namespace
}  // namespace vitscuda::kernels
