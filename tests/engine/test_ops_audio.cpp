// Op-level tests of the audio and loss ops (engine/ops_audio.cpp, engine/ops_loss.cpp): the linear
// spectrogram against a direct DFT written from the definition, its refusal of a gradient, and the tape
// gradients of log_mel (with respect to the waveform) and masked_l1_loss against central differences in f64.
//
// Gradient checks use L = sum(y * r) for a fixed random r, formed with ops::linear so the loss does not go
// through the ops under test, and central differences with h = 1e-6 in f64; the error measure is
// max|numeric - analytic| / max|analytic|. The STFT and the mel projection are linear, so their only error
// is rounding; the magnitude sqrt(re^2 + im^2 + 1e-6) and the log are smooth where the inputs keep them
// (unit-scale waveforms: magnitudes of order 1, mel energies >= 1e-3 with filterbank weights >= 0.05, far
// above the 1e-5 clamp), and |x - y| is kept >= 0.1 from its kink: truncation error ~ h^2 |L'''| / 6 is
// ~1e-12 relative, rounding ~1e-16 * sum|terms| / h ~ 1e-9 relative. Bound 1e-6 [measured: log_mel 1.7e-9,
// masked L1 4.8e-9]; a wrong index, window sample, padding fold or mask weight is off by O(0.1 - 1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/stft_mel.h"
#include "support/gradcheck.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

using testing::normal_tensor;

using testing::error_of;
using testing::requiring_grad;

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// The gradient check of support/gradcheck.h for every input of f (f64), after checking that f records
// exactly one tape node: the relative error per input, 1e300 where an input got no gradient or only zeros.
std::vector<double> gradient_errors(const std::vector<Tensor>& inputs, const OpFn& f, uint32_t seed) {
  {
    std::vector<Tensor> tracked;
    for (const Tensor& t : inputs) tracked.push_back(requiring_grad(t.clone()));
    autograd::Tape tape;
    autograd::RecordingScope recording(tape);
    EXPECT_TRUE(f(tracked).requires_grad());
    EXPECT_EQ(tape.size(), 1u) << "one op, one tape node";
  }
  std::vector<double> errors;
  const std::vector<testing::InputGradcheck> checks = testing::gradcheck(f, inputs, {}, seed);
  for (size_t k = 0; k < checks.size(); ++k) {
    const Tensor& analytic = checks[k].analytic;
    EXPECT_TRUE(analytic.defined()) << "input " << k << " got no gradient";
    const bool nonzero = analytic.defined() && testing::max_abs_diff(analytic, Tensor::zeros(analytic.shape(),
                                                                                             analytic.dtype())) > 0.0;
    EXPECT_TRUE(nonzero) << "input " << k << ": the analytic gradient is zero everywhere";
    errors.push_back(nonzero ? checks[k].error : 1e300);
  }
  return errors;
}

// The magnitude STFT written from its definition: reflect padding (torch's, the edge not repeated), the
// window centred in n_fft, a direct DFT in long double. Returns [B, bins, frames] values.
std::vector<double> naive_linear_spectrogram(const std::vector<double>& wave, int B, int64_t S, int n_fft, int hop,
                                             const std::vector<double>& window_win, int64_t* frames_out) {
  const int win = static_cast<int>(window_win.size()), pad = (n_fft - hop) / 2, bins = n_fft / 2 + 1;
  std::vector<double> window(n_fft, 0.0);
  for (int n = 0; n < win; ++n) window[(n_fft - win) / 2 + n] = window_win[n];
  const int64_t frames = (S + 2 * pad - n_fft) / hop + 1;
  *frames_out = frames;
  const long double pi = std::acos(-1.0L);
  std::vector<double> mag(static_cast<size_t>(B) * bins * frames);
  for (int b = 0; b < B; ++b)
    for (int64_t t = 0; t < frames; ++t)
      for (int k = 0; k < bins; ++k) {
        long double re = 0, im = 0;
        for (int n = 0; n < n_fft; ++n) {
          int64_t j = t * hop + n - pad;
          if (j < 0) j = -j;
          if (j > S - 1) j = 2 * (S - 1) - j;
          const long double x = static_cast<long double>(wave[b * S + j]) * window[n];
          const long double angle = 2 * pi * static_cast<long double>((static_cast<int64_t>(k) * n) % n_fft) / n_fft;
          re += x * std::cos(angle);
          im -= x * std::sin(angle);
        }
        const long double magnitude = std::sqrt(re * re + im * im + 1e-6L);
        mag[(static_cast<size_t>(b) * bins + k) * frames + t] = static_cast<double>(magnitude);
      }
  return mag;
}

struct SpectrogramCase {
  int n_fft, hop, win, B;
  int64_t S;
};

TEST(OpsAudio, LinearSpectrogramMatchesADirectDft) {
  // Partial last frames, a window shorter than n_fft, and a signal barely longer than the padding.
  const SpectrogramCase cases[] = {{16, 4, 12, 2, 21}, {16, 4, 16, 1, 7}, {64, 16, 64, 2, 203}};
  for (const SpectrogramCase& c : cases) {
    SCOPED_TRACE("n_fft " + std::to_string(c.n_fft) + " hop " + std::to_string(c.hop) + " win " +
                 std::to_string(c.win) + " S " + std::to_string(c.S));
    const kernels::StftPlan plan(c.n_fft, c.hop, c.win);
    const Tensor wave = normal_tensor({c.B, c.S}, 7 + static_cast<uint32_t>(c.S), 0.5);
    const std::vector<double> wave_values(wave.data<double>(), wave.data<double>() + wave.numel());
    int64_t frames = 0;
    const std::vector<double> expected = naive_linear_spectrogram(wave_values, c.B, c.S, c.n_fft, c.hop,
                                                                  kernels::periodic_hann_window(c.win), &frames);
    const Tensor expected_t = Tensor::from_vector(expected, {c.B, c.n_fft / 2 + 1, frames});
    double peak = 0.0;
    for (double v : expected) peak = std::max(peak, v);

    const Tensor got = ops::linear_spectrogram(wave, plan);
    ASSERT_EQ(got.shape(), (Shape{c.B, c.n_fft / 2 + 1, frames}));
    EXPECT_EQ(got.dtype(), DType::F64);
    // n_fft-term double sums of values below ~3: rounding ~1e-16 * n_fft * 3 [measured 3.6e-15 at n_fft 64].
    EXPECT_LT(testing::max_abs_diff(got, expected_t), 1e-13 * c.n_fft);

    // float32: the same within float rounding of those sums (~sqrt(n_fft) * 6e-8 * sum|x w|, below 1e-5 of
    // the peak) [measured 2.6e-7 of the peak]; a wrong frame or bin is off by O(peak).
    const Tensor got_f32 = ops::linear_spectrogram(wave.to(DType::F32), plan);
    EXPECT_EQ(got_f32.dtype(), DType::F32);
    EXPECT_LT(testing::max_abs_diff(got_f32, expected_t), 1e-5 * peak) << "peak " << peak;
  }
}

TEST(OpsAudio, LinearSpectrogramRefusesAGradient) {
  const kernels::StftPlan plan(16, 4, 16);
  const Tensor wave = requiring_grad(normal_tensor({1, 30}, 3));
  autograd::Tape tape;
  {
    autograd::RecordingScope recording(tape);
    const std::string msg = error_of([&] { ops::linear_spectrogram(wave, plan); });
    EXPECT_NE(msg.find("linear_spectrogram"), std::string::npos) << msg;
    EXPECT_NE(msg.find("no backward"), std::string::npos) << msg;
    EXPECT_NE(msg.find("f64[1, 30]"), std::string::npos) << msg;
    // A detached waveform is fine while recording, and records nothing.
    const Tensor spec = ops::linear_spectrogram(wave.detach(), plan);
    EXPECT_FALSE(spec.requires_grad());
  }
  EXPECT_EQ(tape.size(), 0u);
  {
    // So is the same waveform where nothing records.
    autograd::NoGradScope no_grad;
    EXPECT_EQ(ops::linear_spectrogram(wave, plan).shape(), (Shape{1, 9, plan.frames(30)}));
  }
  // Input checks name the op.
  std::string msg = error_of([&] { ops::linear_spectrogram(Tensor::zeros({30}), plan); });
  EXPECT_NE(msg.find("[batch, samples]"), std::string::npos) << msg;
  msg = error_of([&] { ops::linear_spectrogram(Tensor::zeros({1, 6}), plan); });
  EXPECT_NE(msg.find("too short for the reflect padding"), std::string::npos) << msg;
}

// A filterbank of weights in [0.05, 1): every mel energy sums several magnitudes >= 1e-3, far above the clamp.
Tensor test_filterbank(int n_mels, int bins, uint32_t seed) {
  Tensor fb = normal_tensor({n_mels, bins}, seed);
  for (int64_t i = 0; i < fb.numel(); ++i) {
    double& x = fb.data<double>()[i];
    x = 0.05 + 0.95 * (0.5 + 0.5 * std::tanh(x));
  }
  return fb;
}

TEST(OpsAudio, LogMelGradientMatchesCentralDifferences) {
  const SpectrogramCase cases[] = {{16, 4, 12, 2, 23}, {32, 8, 32, 1, 41}};
  for (const SpectrogramCase& c : cases) {
    SCOPED_TRACE("n_fft " + std::to_string(c.n_fft) + " S " + std::to_string(c.S));
    const kernels::StftPlan plan(c.n_fft, c.hop, c.win);
    const Tensor fb = test_filterbank(5, plan.bins(), 11);
    const Tensor wave = normal_tensor({c.B, c.S}, 12 + static_cast<uint32_t>(c.S), 0.5);
    const std::vector<double> errors = gradient_errors(
        {wave}, [&](const std::vector<Tensor>& in) { return ops::log_mel(in[0], plan, fb); }, 13);
    EXPECT_LT(errors[0], 1e-6);
  }
}

TEST(OpsAudio, LogMelMatchesItsParts) {
  // log(clamp(fb @ linear_spectrogram)) from the ops it is made of, in f64.
  const kernels::StftPlan plan(32, 8, 24);
  const Tensor fb = test_filterbank(6, plan.bins(), 21);
  const Tensor wave = normal_tensor({2, 50}, 22, 0.5);
  const Tensor mag = ops::linear_spectrogram(wave, plan);
  const Tensor fb_batch = ops::cat({fb.reshape({1, 6, 17}), fb.reshape({1, 6, 17})}, 0);  // matmul does not broadcast
  const Tensor expected = ops::log(ops::clamp_min(ops::matmul(fb_batch, mag), 1e-5));
  const Tensor got = ops::log_mel(wave, plan, fb);
  ASSERT_EQ(got.shape(), (Shape{2, 6, plan.frames(50)}));
  // The same sums, possibly in another order: a few ulps of values of order 1 [measured 0].
  EXPECT_LT(testing::max_abs_diff(got, expected), 1e-13);
}

TEST(OpsAudio, LogMelChecksItsFilterbank) {
  const kernels::StftPlan plan(16, 4, 16);
  const Tensor wave = normal_tensor({1, 30}, 31);
  std::string msg = error_of([&] { ops::log_mel(wave, plan, Tensor::zeros({5, 8}, DType::F64)); });
  EXPECT_NE(msg.find("log_mel"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[n_mels, 9]"), std::string::npos) << msg;
  msg = error_of([&] { ops::log_mel(wave, plan, Tensor::zeros({5, 9})); });  // f32 filterbank, f64 wave
  EXPECT_NE(msg.find("dtypes differ"), std::string::npos) << msg;
  autograd::Tape tape;
  autograd::RecordingScope recording(tape);
  const Tensor fb = requiring_grad(test_filterbank(5, 9, 32));
  msg = error_of([&] { ops::log_mel(wave, plan, fb); });
  EXPECT_NE(msg.find("constant"), std::string::npos) << msg;
}

TEST(OpsLoss, MaskedL1ValueAndGradientsMatchCentralDifferences) {
  const int64_t B = 2, C = 3, F = 7;
  Tensor x = normal_tensor({B, C, F}, 41), y = normal_tensor({B, C, F}, 42);
  // Keep every |x - y| >= 0.1 so the finite differences never cross the kink.
  for (int64_t i = 0; i < x.numel(); ++i) {
    double& a = x.data<double>()[i];
    const double b = y.data<double>()[i];
    if (std::abs(a - b) < 0.1) a = b + (a >= b ? 0.2 : -0.2);
  }
  // Item 1 has 4 valid frames; the mask is f32 (the training step's), converted by the op.
  std::vector<float> mask_values(static_cast<size_t>(B * F), 1.0f);
  for (int64_t t = 4; t < F; ++t) mask_values[F + t] = 0.0f;
  for (const Shape& mask_shape : {Shape{B, 1, F}, Shape{B, F}}) {
    SCOPED_TRACE("mask " + shape_str(mask_shape));
    const Tensor mask = Tensor::from_vector(mask_values, mask_shape);
    double expected = 0.0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < F; ++t)
          expected += std::abs(x.data<double>()[(b * C + c) * F + t] - y.data<double>()[(b * C + c) * F + t]) *
                      mask_values[b * F + t];
    expected /= C * (F + 4.0);
    const Tensor loss = ops::masked_l1_loss(x, y, mask);
    EXPECT_EQ(loss.ndim(), 0);
    EXPECT_EQ(loss.dtype(), DType::F64);
    EXPECT_NEAR(loss.data<double>()[0], expected, 1e-15);

    const std::vector<double> errors = gradient_errors(
        {x, y}, [&](const std::vector<Tensor>& in) { return ops::masked_l1_loss(in[0], in[1], mask); }, 43);
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_LT(errors[0], 1e-6);
    EXPECT_LT(errors[1], 1e-6);
  }
  // Masked frames get no gradient, and only the inputs that need one get one.
  Tensor xg = requiring_grad(x.clone());
  autograd::Tape tape;
  Tensor loss;
  {
    autograd::RecordingScope recording(tape);
    loss = ops::masked_l1_loss(xg, y, Tensor::from_vector(mask_values, {B, 1, F}));
  }
  tape.backward(loss);
  const Tensor& gx = xg.grad_slot()->grad;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < F; ++t)
      EXPECT_EQ(gx.data<double>()[(1 * C + c) * F + t] == 0.0, t >= 4) << "c " << c << " t " << t;
}

}  // namespace
}  // namespace vitscuda
