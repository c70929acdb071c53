// Kernel tests for the log-mel pipeline (kernels/stft_mel.h) and the masked L1 between log-mels
// (kernels/loss.h): the STFT magnitude against a direct DFT of
// the reflect-padded, windowed frames in double precision; the backwards against central finite
// differences in double precision with L = sum(y * r) for a fixed random r.
//
// Gradient tolerance: max|numeric - analytic| / max|analytic| < 1e-6 with h = 1e-6. The STFT (before the
// magnitude) and the mel projection are linear in their input, so the central difference has no truncation
// error there; the magnitude sqrt(re^2 + im^2 + 1e-6) (random signals keep re, im of order 1), the log (on
// x >= 1e-3, with h = 1e-8) and |x - y| (kept >= 0.1 from its kink) are smooth, with truncation error
// ~ h^2 |L'''| / 6 <= 1e-9 relative. The rest is rounding of L: ~1e-16 * sum|terms| / h, at most ~5e-8
// relative for n_fft 1024 (thousands of magnitudes up to ~20). A wrong index, window sample or padding fold
// gives errors of order 0.1-1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "kernels/loss.h"
#include "kernels/stft_mel.h"
#include "support/gradcheck.h"

namespace vitscuda::kernels {
namespace {

using Vec = std::vector<double>;

Vec random_vector(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> uniform(lo, hi);
  Vec v(n);
  for (double& x : v) x = uniform(gen);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double max_abs(const Vec& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max|numeric - analytic| / max|analytic| over the listed coordinates of x, with L(x) a scalar function
// (numeric: the repository's one central difference, support/gradcheck.h).
double gradient_error(const std::function<double(const Vec&)>& loss, Vec x, const Vec& analytic,
                      const std::vector<size_t>& coordinates, double h = vitscuda::testing::kGradcheckStep) {
  const std::vector<double> numeric =
      vitscuda::testing::numeric_gradient_at(x.data(), coordinates, [&] { return loss(x); }, h);
  double worst = 0.0, scale = 0.0;
  for (size_t k = 0; k < coordinates.size(); ++k) {
    worst = std::max(worst, std::abs(numeric[k] - analytic[coordinates[k]]));
    scale = std::max(scale, std::abs(analytic[coordinates[k]]));
  }
  EXPECT_GT(scale, 0.0) << "the analytic gradient is zero on every checked coordinate";
  return worst / scale;
}

std::vector<size_t> all_coordinates(size_t n) {
  std::vector<size_t> c(n);
  for (size_t i = 0; i < n; ++i) c[i] = i;
  return c;
}

// Direct DFT of the reflect-padded frames, written from the definition (no shared code with the kernel):
// returns re, im [B, bins, frames].
struct NaiveStft {
  Vec re, im;
  int64_t frames = 0;
};

NaiveStft naive_stft(const Vec& wave, int B, int64_t S, int n_fft, int hop, const Vec& window_win) {
  const int win = static_cast<int>(window_win.size());
  const int pad = (n_fft - hop) / 2, bins = n_fft / 2 + 1;
  Vec window(n_fft, 0.0);
  for (int n = 0; n < win; ++n) window[(n_fft - win) / 2 + n] = window_win[n];
  NaiveStft out;
  out.frames = (S + 2 * pad - n_fft) / hop + 1;
  out.re.assign(static_cast<size_t>(B) * bins * out.frames, 0.0);
  out.im = out.re;
  // e^{-2 pi i m / n_fft} for m = k n mod n_fft, in long double.
  const long double pi = std::acos(-1.0L);
  std::vector<long double> cos_table(n_fft), sin_table(n_fft);
  for (int m = 0; m < n_fft; ++m) {
    cos_table[m] = std::cos(2 * pi * m / n_fft);
    sin_table[m] = std::sin(2 * pi * m / n_fft);
  }
  for (int b = 0; b < B; ++b) {
    // torch's reflect padding: padded[p] = x[|p - pad|] mirrored again at the far end.
    std::vector<double> padded(static_cast<size_t>(S + 2 * pad));
    for (int64_t p = 0; p < S + 2 * pad; ++p) {
      int64_t j = p - pad;
      if (j < 0) j = -j;
      if (j > S - 1) j = 2 * (S - 1) - j;
      padded[p] = wave[b * S + j];
    }
    for (int64_t t = 0; t < out.frames; ++t)
      for (int k = 0; k < bins; ++k) {
        long double sr = 0, si = 0;
        for (int n = 0; n < n_fft; ++n) {
          const long double windowed = static_cast<long double>(padded[t * hop + n]) * window[n];
          sr += windowed * cos_table[(k * n) % n_fft];
          si -= windowed * sin_table[(k * n) % n_fft];
        }
        out.re[(static_cast<int64_t>(b) * bins + k) * out.frames + t] = static_cast<double>(sr);
        out.im[(static_cast<int64_t>(b) * bins + k) * out.frames + t] = static_cast<double>(si);
      }
  }
  return out;
}

struct StftCase {
  int n_fft, hop, win, B;
  int64_t S;
};

// Lengths include partial last frames ((S + 2 pad - n_fft) % hop != 0) and signals barely longer than the pad.
const StftCase kStftCases[] = {
    {16, 4, 16, 2, 13}, {16, 4, 16, 1, 7},  {16, 4, 12, 1, 21}, {64, 16, 48, 2, 203},
    {1024, 256, 1024, 1, 3000}, {1024, 256, 1024, 2, 1024},
};

TEST(StftMel, PeriodicHannWindowMatchesDefinition) {
  const Vec w = periodic_hann_window(8);
  // torch.hann_window(8): 0.5 - 0.5 cos(2 pi n / 8).
  const double expected[8] = {0.0, 0.14644660940672624, 0.5, 0.8535533905932737, 1.0, 0.8535533905932737, 0.5,
                              0.14644660940672624};
  for (int n = 0; n < 8; ++n) EXPECT_NEAR(w[n], expected[n], 1e-15) << n;
}

TEST(StftMel, ForwardMatchesDirectDftInDouble) {
  for (const StftCase& c : kStftCases) {
    SCOPED_TRACE("n_fft " + std::to_string(c.n_fft) + " hop " + std::to_string(c.hop) + " win " +
                 std::to_string(c.win) + " B " + std::to_string(c.B) + " S " + std::to_string(c.S));
    const Vec wave = random_vector(static_cast<size_t>(c.B * c.S), 11 + c.n_fft + static_cast<uint32_t>(c.S));
    const StftPlan plan(c.n_fft, c.hop, c.win);
    const int64_t frames = plan.frames(c.S);
    const NaiveStft ref = naive_stft(wave, c.B, c.S, c.n_fft, c.hop, periodic_hann_window(c.win));
    ASSERT_EQ(frames, ref.frames);
    const int bins = plan.bins();
    ASSERT_EQ(bins, c.n_fft / 2 + 1);
    Vec mag(static_cast<size_t>(c.B) * bins * frames), spec(2 * mag.size());
    stft_magnitude_forward_cpu(plan, wave.data(), c.B, c.S, mag.data(), spec.data());
    // The DFT sums n_fft products of magnitude <= 1: double rounding leaves ~1e-16 * n_fft.
    const double tol = 1e-13 * c.n_fft;
    double worst_spec = 0.0, worst_mag = 0.0;
    for (int b = 0; b < c.B; ++b)
      for (int k = 0; k < bins; ++k)
        for (int64_t t = 0; t < frames; ++t) {
          const int64_t i = (static_cast<int64_t>(b) * bins + k) * frames + t;
          const int64_t base = static_cast<int64_t>(b) * 2 * bins * frames;
          worst_spec = std::max(worst_spec, std::abs(spec[base + k * frames + t] - ref.re[i]));
          worst_spec = std::max(worst_spec, std::abs(spec[base + (bins + k) * frames + t] - ref.im[i]));
          const double expected = std::sqrt(ref.re[i] * ref.re[i] + ref.im[i] * ref.im[i] + 1e-6);
          worst_mag = std::max(worst_mag, std::abs(mag[i] - expected));
        }
    EXPECT_LT(worst_spec, tol);
    EXPECT_LT(worst_mag, tol);

    // The plan-free entry point gives the same magnitudes.
    Vec mag2(mag.size());
    stft_magnitude_forward_cpu<double>(wave.data(), c.B, c.S, c.n_fft, c.hop, c.win, nullptr, mag2.data());
    EXPECT_EQ(mag2, mag);
  }
}

TEST(StftMel, ForwardFloatMatchesDirectDft) {
  const StftCase c{1024, 256, 1024, 2, 3000};
  const Vec wave = random_vector(static_cast<size_t>(c.B * c.S), 5);
  std::vector<float> wave_f(wave.begin(), wave.end());
  const StftPlan plan(c.n_fft, c.hop, c.win);
  const int64_t frames = plan.frames(c.S);
  const NaiveStft ref = naive_stft(wave, c.B, c.S, c.n_fft, c.hop, periodic_hann_window(c.win));
  std::vector<float> mag(static_cast<size_t>(c.B) * plan.bins() * frames);
  stft_magnitude_forward_cpu(plan, wave_f.data(), c.B, c.S, mag.data(), static_cast<float*>(nullptr));
  double worst = 0.0, peak = 0.0;
  for (size_t i = 0; i < mag.size(); ++i) {
    const double expected = std::sqrt(ref.re[i] * ref.re[i] + ref.im[i] * ref.im[i] + 1e-6);
    worst = std::max(worst, std::abs(mag[i] - expected));
    peak = std::max(peak, expected);
  }
  // float32 sums of 1024 terms: error ~ sqrt(1024) * 6e-8 * sum|x w| (~500 here), far below 1e-4 of the
  // peak; a wrong basis row or frame offset is off by O(peak).
  EXPECT_LT(worst, 1e-5 * peak) << "peak " << peak;
}

TEST(StftMel, CustomWindowIsZeroPaddedToNfftCentred) {
  const int n_fft = 16, hop = 4, win = 10;
  const int64_t S = 19;
  const Vec window = random_vector(win, 3, 0.1, 1.0);
  const Vec wave = random_vector(S, 4);
  const StftPlan plan(n_fft, hop, win, window.data());
  const NaiveStft ref = naive_stft(wave, 1, S, n_fft, hop, window);
  Vec mag(static_cast<size_t>(plan.bins()) * plan.frames(S));
  stft_magnitude_forward_cpu(plan, wave.data(), 1, S, mag.data(), static_cast<double*>(nullptr));
  for (size_t i = 0; i < mag.size(); ++i)
    EXPECT_NEAR(mag[i], std::sqrt(ref.re[i] * ref.re[i] + ref.im[i] * ref.im[i] + 1e-6), 1e-13) << i;
}

TEST(StftMel, ShortSignalsAndBadPlansAreRejected) {
  const StftPlan plan(1024, 256, 1024);
  EXPECT_EQ(plan.pad(), 384);
  EXPECT_EQ(plan.frames(385), 1);
  EXPECT_EQ(plan.frames(512), 2);
  EXPECT_EQ(plan.frames(32000), 125);
  try {
    plan.frames(384);
    FAIL() << "a signal no longer than the reflect padding was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("384 samples is too short for the reflect padding"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(StftPlan(1024, 255, 1024), Error);  // odd n_fft - hop
  EXPECT_THROW(StftPlan(1024, 256, 2048), Error);  // window longer than n_fft
}

TEST(StftMel, PlanCopiesShareTheirTables) {
  const StftPlan plan(64, 16, 48);
  const StftPlan copy = plan;
  // One basis per dtype, built once and shared by every copy (a copy rebuilding it would cost O(n_fft^2)).
  EXPECT_EQ(&plan.cpu_basis<float>(), &copy.cpu_basis<float>());
  EXPECT_EQ(&plan.cpu_basis<double>(), &copy.cpu_basis<double>());
  EXPECT_EQ(plan.cpu_basis<double>().size(), static_cast<size_t>(2 * 33 * 64));
  // The window is the 48-sample Hann window centred in 64 samples, zero outside.
  const Vec hann = periodic_hann_window(48);
  ASSERT_EQ(plan.window().size(), 64u);
  for (int n = 0; n < 64; ++n) EXPECT_EQ(plan.window()[n], n >= 8 && n < 56 ? hann[n - 8] : 0.0) << n;
  EXPECT_EQ(plan.spectrum_size(3, 100), 3 * 2 * 33 * plan.frames(100));
}

TEST(StftMel, MagnitudeBackwardMatchesFiniteDifferences) {
  for (const StftCase& c : kStftCases) {
    SCOPED_TRACE("n_fft " + std::to_string(c.n_fft) + " hop " + std::to_string(c.hop) + " win " +
                 std::to_string(c.win) + " B " + std::to_string(c.B) + " S " + std::to_string(c.S));
    const StftPlan plan(c.n_fft, c.hop, c.win);
    const int64_t frames = plan.frames(c.S);
    const size_t n_mag = static_cast<size_t>(c.B) * plan.bins() * frames;
    const Vec r = random_vector(n_mag, 21);
    const Vec wave = random_vector(static_cast<size_t>(c.B * c.S), 22 + static_cast<uint32_t>(c.S));
    auto loss = [&](const Vec& x) {
      Vec mag(n_mag);
      stft_magnitude_forward_cpu(plan, x.data(), c.B, c.S, mag.data(), static_cast<double*>(nullptr));
      return dot(mag, r);
    };
    Vec mag(n_mag), spec(2 * n_mag);
    stft_magnitude_forward_cpu(plan, wave.data(), c.B, c.S, mag.data(), spec.data());
    // Accumulation: start from a known non-zero gradient and subtract it afterwards.
    const Vec preset = random_vector(wave.size(), 23);
    Vec grad = preset;
    stft_magnitude_backward_cpu(plan, spec.data(), r.data(), c.B, c.S, grad.data());
    for (size_t i = 0; i < grad.size(); ++i) grad[i] -= preset[i];
    // Every sample for the small transforms; for n_fft 1024 the padded edges (where the mirrored samples
    // fold back), the frame boundaries near the end, and a spread of interior samples.
    std::vector<size_t> coordinates;
    if (c.n_fft <= 64) {
      coordinates = all_coordinates(wave.size());
    } else {
      for (int b = 0; b < c.B; ++b) {
        for (int64_t j : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{200}, int64_t{383}, int64_t{384},
                          int64_t{385}, c.S / 2, c.S - 386, c.S - 385, c.S - 200, c.S - 3, c.S - 2, c.S - 1})
          coordinates.push_back(static_cast<size_t>(b * c.S + j));
      }
    }
    EXPECT_LT(gradient_error(loss, wave, grad, coordinates), 1e-6);
  }
}

TEST(StftMel, MagnitudeBackwardFoldsMirroredSamples) {
  // With hop == n_fft no frames overlap; then samples 1..pad appear twice in the padded signal (once mirrored),
  // and the adjoint identity <grad_wave, v> = <grad_padded, pad(v)> holds only with the fold.
  const int n_fft = 8, hop = 4, win = 8;
  const int64_t S = 11;
  const StftPlan plan(n_fft, hop, win);
  const int64_t frames = plan.frames(S);
  const size_t n_mag = static_cast<size_t>(plan.bins()) * frames;
  const Vec wave = random_vector(S, 31), r = random_vector(n_mag, 32);
  Vec mag(n_mag), spec(2 * n_mag), grad(S, 0.0);
  stft_magnitude_forward_cpu(plan, wave.data(), 1, S, mag.data(), spec.data());
  stft_magnitude_backward_cpu(plan, spec.data(), r.data(), 1, S, grad.data());
  auto loss = [&](const Vec& x) {
    Vec m(n_mag);
    stft_magnitude_forward_cpu(plan, x.data(), 1, S, m.data(), static_cast<double*>(nullptr));
    return dot(m, r);
  };
  EXPECT_LT(gradient_error(loss, wave, grad, all_coordinates(S)), 1e-6);
}

TEST(StftMel, MelProjectionMatchesLoopsAndFiniteDifferences) {
  const int B = 2, M = 5, bins = 9;
  const int64_t frames = 7;
  const Vec fb = random_vector(static_cast<size_t>(M) * bins, 41, 0.0, 1.0);
  const Vec mag = random_vector(static_cast<size_t>(B) * bins * frames, 42, 0.0, 2.0);
  Vec mel(static_cast<size_t>(B) * M * frames);
  mel_project_forward_cpu(fb.data(), mag.data(), mel.data(), B, M, bins, frames);
  for (int b = 0; b < B; ++b)
    for (int m = 0; m < M; ++m)
      for (int64_t t = 0; t < frames; ++t) {
        double s = 0.0;
        for (int k = 0; k < bins; ++k) s += fb[m * bins + k] * mag[(b * bins + k) * frames + t];
        EXPECT_NEAR(mel[(b * M + m) * frames + t], s, 1e-14);
      }
  const Vec r = random_vector(mel.size(), 43);
  auto loss = [&](const Vec& x) {
    Vec y(mel.size());
    mel_project_forward_cpu(fb.data(), x.data(), y.data(), B, M, bins, frames);
    return dot(y, r);
  };
  const Vec preset = random_vector(mag.size(), 44);
  Vec grad = preset;
  mel_project_backward_cpu(fb.data(), r.data(), grad.data(), B, M, bins, frames);
  for (size_t i = 0; i < grad.size(); ++i) grad[i] -= preset[i];
  EXPECT_LT(gradient_error(loss, mag, grad, all_coordinates(mag.size())), 1e-6);
}

TEST(StftMel, LogClampForwardBackward) {
  const double lo = kLogMelClampMin;
  // Away from the clamp point: finite differences.
  const Vec x = random_vector(50, 51, 1e-3, 2.0);
  const Vec r = random_vector(x.size(), 52);
  auto loss = [&](const Vec& v) {
    Vec y(v.size());
    log_clamp_forward_cpu(v.data(), y.data(), static_cast<int64_t>(v.size()), lo);
    return dot(y, r);
  };
  Vec grad(x.size(), 0.5);
  log_clamp_backward_cpu(x.data(), r.data(), grad.data(), static_cast<int64_t>(x.size()), lo);
  for (double& g : grad) g -= 0.5;
  EXPECT_LT(gradient_error(loss, x, grad, all_coordinates(x.size()), 1e-8), 1e-6);

  // Clamped values: log(1e-5) and no gradient; at exactly the clamp value the gradient passes (torch).
  const Vec edge = {1e-7, -3.0, lo, 0.5};
  Vec y(4), g(4, 0.0);
  const Vec dy = {1.0, 1.0, 1.0, 1.0};
  log_clamp_forward_cpu(edge.data(), y.data(), 4, lo);
  log_clamp_backward_cpu(edge.data(), dy.data(), g.data(), 4, lo);
  EXPECT_DOUBLE_EQ(y[0], std::log(lo));
  EXPECT_DOUBLE_EQ(y[1], std::log(lo));
  EXPECT_DOUBLE_EQ(y[2], std::log(lo));
  EXPECT_DOUBLE_EQ(y[3], std::log(0.5));
  EXPECT_EQ(g[0], 0.0);
  EXPECT_EQ(g[1], 0.0);
  EXPECT_DOUBLE_EQ(g[2], 1.0 / lo);
  EXPECT_DOUBLE_EQ(g[3], 2.0);
}

TEST(StftMel, MaskedL1ForwardBackward) {
  const int B = 2, C = 3;
  const int64_t frames = 6;
  const size_t n = static_cast<size_t>(B) * C * frames;
  Vec x = random_vector(n, 61), y = random_vector(n, 62);
  // Keep every |x - y| >= 0.1 so the finite differences never cross a kink.
  for (size_t i = 0; i < n; ++i)
    if (std::abs(x[i] - y[i]) < 0.1) y[i] = x[i] + (x[i] >= y[i] ? -0.2 : 0.2);
  const Vec mask = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};  // item 1 has 4 valid frames
  double expected = 0.0;
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      for (int64_t t = 0; t < frames; ++t)
        expected += std::abs(x[(b * C + c) * frames + t] - y[(b * C + c) * frames + t]) * mask[b * frames + t];
  expected /= C * 10.0;
  auto l1 = [&](const Vec& a, const Vec& b, const Vec& m) {
    double loss = 0.0;
    masked_l1_forward_cpu(a.data(), b.data(), m.data(), B, C, frames, &loss);
    return loss;
  };
  EXPECT_NEAR(l1(x, y, mask), expected, 1e-15);

  const double g = 1.7;
  auto loss_x = [&](const Vec& v) { return g * l1(v, y, mask); };
  auto loss_y = [&](const Vec& v) { return g * l1(x, v, mask); };
  Vec gx(n, 0.25), gy(n, -0.5);
  masked_l1_backward_cpu(x.data(), y.data(), mask.data(), &g, gx.data(), gy.data(), B, C, frames);
  for (size_t i = 0; i < n; ++i) {
    gx[i] -= 0.25;
    gy[i] += 0.5;
  }
  EXPECT_LT(gradient_error(loss_x, x, gx, all_coordinates(n)), 1e-6);
  EXPECT_LT(gradient_error(loss_y, y, gy, all_coordinates(n)), 1e-6);
  // Masked frames get no gradient.
  for (int c = 0; c < C; ++c) {
    EXPECT_EQ(gx[(1 * C + c) * frames + 4], 0.0);
    EXPECT_EQ(gx[(1 * C + c) * frames + 5], 0.0);
  }

  // sign(0) = 0 at a tie; grad_y may be omitted.
  Vec tie_y = y;
  tie_y[0] = x[0];
  Vec tx(n, 0.0);
  const double one = 1.0;
  masked_l1_backward_cpu(x.data(), tie_y.data(), mask.data(), &one, tx.data(), static_cast<double*>(nullptr), B, C,
                         frames);
  EXPECT_EQ(tx[0], 0.0);
  EXPECT_DOUBLE_EQ(std::abs(tx[1]), 1.0 / (C * 10.0));

  const Vec empty_mask(static_cast<size_t>(B) * frames, 0.0);
  EXPECT_THROW(l1(x, y, empty_mask), Error);
}

TEST(StftMel, FloatAndDoubleInstantiationsAgree) {
  const int n_fft = 64, hop = 16, win = 64, B = 1;
  const int64_t S = 200;
  const Vec wave = random_vector(S, 71);
  const std::vector<float> wave_f(wave.begin(), wave.end());
  const StftPlan pd(n_fft, hop, win);
  const StftPlan& pf = pd;  // one plan serves both dtypes
  const int64_t frames = pd.frames(S);
  const size_t n_mag = static_cast<size_t>(pd.bins()) * frames;
  Vec md(n_mag), sd(2 * n_mag), gd(S, 0.0);
  std::vector<float> mf(n_mag), sf(2 * n_mag), gf(S, 0.0f);
  stft_magnitude_forward_cpu(pd, wave.data(), B, S, md.data(), sd.data());
  stft_magnitude_forward_cpu(pf, wave_f.data(), B, S, mf.data(), sf.data());
  const Vec r = random_vector(n_mag, 72);
  const std::vector<float> rf(r.begin(), r.end());
  stft_magnitude_backward_cpu(pd, sd.data(), r.data(), B, S, gd.data());
  stft_magnitude_backward_cpu(pf, sf.data(), rf.data(), B, S, gf.data());
  // float32 rounding over 64-term sums of values <= 1: well below 1e-4 of the peak.
  const double peak_mag = max_abs(md), peak_grad = max_abs(gd);
  for (size_t i = 0; i < n_mag; ++i) EXPECT_NEAR(mf[i], md[i], 1e-5 * peak_mag) << i;
  for (int64_t i = 0; i < S; ++i) EXPECT_NEAR(gf[i], gd[i], 1e-4 * peak_grad) << i;
}

}  // namespace
}  // namespace vitscuda::kernels
