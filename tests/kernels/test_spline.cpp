// Kernel tests of the rational-quadratic spline (kernels/spline.h): forward and reverse against
// transformers' own function (tests/data/kernels/spline_cases.txt, written by
// tools/golden/make_kernel_cases_spline.py), the backward against torch autograd and against central
// differences of L = sum(y * r) + sum(logdet * r2) in both directions (kernel_checks.h).
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <string>

#include "common/error.h"
#include "kernel_checks.h"
#include "kernels/spline.h"
#include "support/test_support.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

// ================================================================== spline

// The reference arrays of a case file (tools/golden/make_kernel_cases_*.py), values and shapes.
std::map<std::string, Vec> load_cases(const std::string& relative, std::map<std::string, std::vector<int64_t>>* shapes) {
  std::map<std::string, Vec> out;
  for (auto& [name, array] : testing::read_case_file(relative)) {
    if (shapes) (*shapes)[name] = array.shape;
    out[name] = std::move(array.values);
  }
  return out;
}

struct SplineCase {
  std::string name;
  int64_t n = 0;
  int bins = 0;
  bool reverse = false;
  double bound = 0;
  Vec inputs, widths, heights, derivatives;
};

const std::map<std::string, Vec>& spline_file() {
  static const std::map<std::string, Vec> cases = load_cases("kernels/spline_cases.txt", nullptr);
  return cases;
}

const Vec& spline_array(const std::string& name) {
  auto it = spline_file().find(name);
  VC_CHECK(it != spline_file().end(), "spline_cases.txt has no '" << name << "'");
  return it->second;
}

SplineCase spline_case(const std::string& name) {
  SplineCase c;
  c.name = name;
  const Vec& p = spline_array(name + ".params");
  c.bins = static_cast<int>(p.at(0));
  c.reverse = p.at(1) != 0.0;
  c.bound = p.at(2);
  c.inputs = spline_array(name + ".inputs");
  c.widths = spline_array(name + ".widths");
  c.heights = spline_array(name + ".heights");
  c.derivatives = spline_array(name + ".derivatives");
  c.n = static_cast<int64_t>(c.inputs.size());
  return c;
}

const std::vector<std::string> kSplineCases = {"forward_bins10", "reverse_bins10", "forward_bins4", "reverse_bins4",
                                               "reverse_bins6_bound3"};

template <typename T>
void run_spline(const SplineCase& c, std::vector<T>& y, std::vector<T>& logdet) {
  const std::vector<T> x = cast<T>(c.inputs), w = cast<T>(c.widths), h = cast<T>(c.heights),
                       d = cast<T>(c.derivatives);
  y.assign(c.n, T(0));
  logdet.assign(c.n, T(0));
  rational_quadratic_spline_forward_cpu<T>(x.data(), w.data(), h.data(), d.data(), y.data(), logdet.data(), c.n,
                                           c.bins, c.reverse, c.bound);
}

TEST(SplineKernel, MatchesTransformersForwardAndReverse) {
  ASSERT_EQ(kSplineCases.size(), 5u);
  for (const std::string& name : kSplineCases) {
    SCOPED_TRACE(name);
    const SplineCase c = spline_case(name);
    std::vector<double> y, logdet;
    run_spline(c, y, logdet);
    // f64 against torch's f64: the same formulas; differences come from exp/log1p rounding
    // (~1e-16) amplified by at most ~1e3 through narrow bins.
    EXPECT_LT(relative_max_error(y, spline_array(name + ".y64")), 1e-12);
    EXPECT_LT(relative_max_error(logdet, spline_array(name + ".logdet64")), 1e-12);
    // f32 against torch's f32 on the same (f32-exact) values: the same operation order, so a
    // few units in the last place, again amplified by narrow bins: 1e-5 of the largest value.
    std::vector<float> y32, logdet32;
    run_spline(c, y32, logdet32);
    EXPECT_LT(relative_max_error(y32, spline_array(name + ".y32")), 1e-5);
    EXPECT_LT(relative_max_error(logdet32, spline_array(name + ".logdet32")), 1e-5);
    // Outside the tail bound: identity with log|det| 0, exactly.
    int outside = 0;
    for (int64_t i = 0; i < c.n; ++i)
      if (std::fabs(c.inputs[i]) > c.bound) {
        ++outside;
        EXPECT_EQ(y[i], c.inputs[i]);
        EXPECT_EQ(logdet[i], 0.0);
      }
    EXPECT_GT(outside, 0) << "the case has no input outside the bound";
  }
}

// Reverse undoes forward, and its log|det| is the negative of forward's.
TEST(SplineKernel, ReverseInvertsForward) {
  const SplineCase f = spline_case("forward_bins10");
  std::vector<double> y, logdet;
  run_spline(f, y, logdet);
  SplineCase r = f;
  r.reverse = true;
  r.inputs = y;
  std::vector<double> x, logdet_r;
  run_spline(r, x, logdet_r);
  for (int64_t i = 0; i < f.n; ++i) {
    EXPECT_NEAR(x[i], f.inputs[i], 1e-10) << "element " << i;
    EXPECT_NEAR(logdet_r[i], -logdet[i], 1e-8) << "element " << i;
  }
}

TEST(SplineKernel, InvalidParametersNameTheElement) {
  SplineCase c = spline_case("reverse_bins4");
  c.heights[5 * c.bins + 1] = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> y, logdet;
  try {
    run_spline(c, y, logdet);
    FAIL() << "no error for NaN spline parameters";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("negative discriminant"), std::string::npos) << msg;
    EXPECT_NE(msg.find("element 5"), std::string::npos) << msg;
  }
}

struct SplineGrads {
  AccumulatedGrad dx, dw, dh, dd;
  explicit SplineGrads(const SplineCase& c)
      : dx(c.n, 71), dw(c.n * c.bins, 72), dh(c.n * c.bins, 73), dd(c.n * (c.bins - 1), 74) {}
};

void spline_backward(const SplineCase& c, const Vec& r_y, const Vec& r_logdet, SplineGrads& g) {
  rational_quadratic_spline_backward_cpu<double>(c.inputs.data(), c.widths.data(), c.heights.data(),
                                                 c.derivatives.data(), r_y.data(), r_logdet.data(), g.dx.data(),
                                                 g.dw.data(), g.dh.data(), g.dd.data(), c.n, c.bins, c.reverse,
                                                 c.bound);
}

// Against torch autograd's gradients of sum(y * r_y) + sum(logdet * r_logdet).
TEST(SplineKernel, BackwardMatchesTorchAutograd) {
  for (const std::string& name : kSplineCases) {
    SCOPED_TRACE(name);
    const SplineCase c = spline_case(name);
    SplineGrads g(c);
    spline_backward(c, spline_array(name + ".r_y"), spline_array(name + ".r_logdet"), g);
    // The same derivatives in another association order; narrow bins amplify rounding.
    EXPECT_LT(relative_max_error(g.dx.added(), spline_array(name + ".dinputs")), 1e-10);
    EXPECT_LT(relative_max_error(g.dw.added(), spline_array(name + ".dwidths")), 1e-10);
    EXPECT_LT(relative_max_error(g.dh.added(), spline_array(name + ".dheights")), 1e-10);
    EXPECT_LT(relative_max_error(g.dd.added(), spline_array(name + ".dderivatives")), 1e-10);
  }
}

// Random parameters of moderate size (so no bin is so narrow that h = 1e-6 stops being small
// next to it), inputs inside and outside the bound but at least 1e-3 from it (the spline meets
// the identity tail there with a kink in log|det|'s derivative).
SplineCase random_spline_case(int64_t n, int bins, bool reverse, uint32_t seed) {
  SplineCase c;
  c.n = n;
  c.bins = bins;
  c.reverse = reverse;
  c.bound = 5.0;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> uniform(-6.0, 6.0);
  for (int64_t i = 0; i < n; ++i) {
    double x;
    do x = uniform(gen);
    while (std::fabs(std::fabs(x) - c.bound) < 1e-3);
    c.inputs.push_back(x);
  }
  c.widths = random_vector(n * bins, seed + 1, 0.7);
  c.heights = random_vector(n * bins, seed + 2, 0.7);
  c.derivatives = random_vector(n * (bins - 1), seed + 3, 0.7);
  return c;
}

TEST(SplineKernel, BackwardMatchesFiniteDifferencesBothDirections) {
  for (const bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "reverse" : "forward");
    SplineCase c = random_spline_case(40, 5, reverse, reverse ? 900 : 800);
    const Vec r_y = random_vector(c.n, 11), r_logdet = random_vector(c.n, 12);
    auto loss = [&]() {
      std::vector<double> y, logdet;
      run_spline(c, y, logdet);
      return dot(y, r_y) + dot(logdet, r_logdet);
    };
    SplineGrads g(c);
    spline_backward(c, r_y, r_logdet, g);
    EXPECT_LT(relative_max_error(g.dx.added(), numeric_gradient(&c.inputs, loss)), kGradTolerance) << "inputs";
    EXPECT_LT(relative_max_error(g.dw.added(), numeric_gradient(&c.widths, loss)), kGradTolerance) << "widths";
    EXPECT_LT(relative_max_error(g.dh.added(), numeric_gradient(&c.heights, loss)), kGradTolerance) << "heights";
    EXPECT_LT(relative_max_error(g.dd.added(), numeric_gradient(&c.derivatives, loss)), kGradTolerance)
        << "derivatives";
  }
}

// Each output's gradient on its own (the op records the two outputs as two tape nodes), and
// null buffers for the gradients nobody needs.
TEST(SplineKernel, BackwardOfEachOutputSeparatelyAddsUpToTheJointOne) {
  const SplineCase c = spline_case("reverse_bins10");
  const Vec& r_y = spline_array("reverse_bins10.r_y");
  const Vec& r_logdet = spline_array("reverse_bins10.r_logdet");
  Vec dx(c.n, 0.0), dw(c.n * c.bins, 0.0), dh(c.n * c.bins, 0.0), dd(c.n * (c.bins - 1), 0.0);
  rational_quadratic_spline_backward_cpu<double>(c.inputs.data(), c.widths.data(), c.heights.data(),
                                                 c.derivatives.data(), r_y.data(), nullptr, dx.data(), dw.data(),
                                                 dh.data(), dd.data(), c.n, c.bins, true, c.bound);
  rational_quadratic_spline_backward_cpu<double>(c.inputs.data(), c.widths.data(), c.heights.data(),
                                                 c.derivatives.data(), nullptr, r_logdet.data(), dx.data(), nullptr,
                                                 dh.data(), nullptr, c.n, c.bins, true, c.bound);
  EXPECT_LT(relative_max_error(dx, spline_array("reverse_bins10.dinputs")), 1e-10);
  EXPECT_LT(relative_max_error(dh, spline_array("reverse_bins10.dheights")), 1e-10);
  // Widths and derivatives only got the output's part: not the whole gradient.
  EXPECT_GT(relative_max_error(dw, spline_array("reverse_bins10.dwidths")), 1e-3);
}

// The f32 backward against the f64 one on the torch cases.
TEST(SplineKernel, FloatBackwardMatchesDouble) {
  for (const std::string& name : {std::string("forward_bins4"), std::string("reverse_bins10")}) {
    SCOPED_TRACE(name);
    const SplineCase c = spline_case(name);
    const Vec& r_y = spline_array(name + ".r_y");
    const Vec& r_logdet = spline_array(name + ".r_logdet");
    const std::vector<float> x = cast<float>(c.inputs), w = cast<float>(c.widths), h = cast<float>(c.heights),
                             d = cast<float>(c.derivatives), ry = cast<float>(r_y), rl = cast<float>(r_logdet);
    std::vector<float> dx(c.n), dw(c.n * c.bins), dh(c.n * c.bins), dd(c.n * (c.bins - 1));
    rational_quadratic_spline_backward_cpu<float>(x.data(), w.data(), h.data(), d.data(), ry.data(), rl.data(),
                                                  dx.data(), dw.data(), dh.data(), dd.data(), c.n, c.bins, c.reverse,
                                                  c.bound);
    // Rounding in f32 (6e-8) amplified by the narrowest bins (~1e2 here): 1e-4 of the largest gradient.
    EXPECT_LT(relative_max_error(dx, spline_array(name + ".dinputs")), 1e-4);
    EXPECT_LT(relative_max_error(dw, spline_array(name + ".dwidths")), 1e-4);
    EXPECT_LT(relative_max_error(dh, spline_array(name + ".dheights")), 1e-4);
    EXPECT_LT(relative_max_error(dd, spline_array(name + ".dderivatives")), 1e-4);
  }
}

}  // namespace
}  // namespace vitscuda::kernels
