// model/mel against torch + librosa (tests/data/model/mel_cases.txt, from tools/golden/make_mel_cases.py):
// the Slaney filterbank, the log-mel, the masked L1 and its gradient with respect to the waveform through
// the tape, in float32 (VITS' training precision) and float64.
//
// Tolerances (measured worst cases in brackets):
// - filterbank 1e-6 abs [5e-11]: both sides evaluate librosa's formula in double and round to float32;
//   values are below 0.03 (float32 ulp < 4e-9), so only an error in the formula (band edges, norm) shows.
// - float32 log-mel 1e-4 abs [1.1e-5]: the log turns relative errors of the mel energies into absolute
//   ones. Our float32 DFT is a 1024-term gemm sum (rounding ~ sqrt(1024) * 6e-8 relative to the frame's
//   loudest bins) and torch's an FFT; quiet bands hold 1e-2 to 1e-3 of that energy (down to the
//   sqrt(1e-6) magnitude floor), which magnifies the error to ~1e-5 in their log. A wrong window, frame
//   offset or filterbank changes log-mels by > 1e-2.
// - float32 loss 1e-5 relative [2e-7]; gradient 1e-4 relative L2 [6e-6]: sums of the same rounding-level
//   differences. The cases keep |generated - target| >= 2.5e-3, so no L1 sign differs between the two.
// - float64: log-mel 1e-11 abs [3e-14], loss 1e-12 relative [3e-16], gradient 1e-11 relative L2 [1e-14].
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "model/mel.h"
#include "support/test_support.h"

namespace vitscuda::model {
namespace {

using GoldenTensor = vitscuda::testing::CaseArray;

const std::map<std::string, GoldenTensor>& golden() {
  static const std::map<std::string, GoldenTensor> tensors = vitscuda::testing::read_case_file("model/mel_cases.txt");
  return tensors;
}

const GoldenTensor& golden_tensor(const std::string& name) {
  auto it = golden().find(name);
  VC_CHECK(it != golden().end(), "mel_cases.txt has no tensor " << name);
  return it->second;
}

// The file holds float32 data (waves, targets, masks, float32 results) with 9 digits: those values are
// rounded to float32 first, as torch's float64 run used exactly the float32 values. Names ending in "_f64"
// are float64 results (17 digits).
Tensor golden_as(const std::string& name, DType dtype) {
  const GoldenTensor& g = golden_tensor(name);
  const bool stored_f64 = name.size() > 4 && name.compare(name.size() - 4, 4, "_f64") == 0;
  Tensor t = Tensor::from_vector(g.values, g.shape);
  if (!stored_f64) t = t.to(DType::F32);
  return t.to(dtype);
}

const char* const kCases[] = {"batch2", "single", "small_window"};

MelConfig config_of(const std::string& name) {
  const std::vector<double>& c = golden_tensor(name + ".config").values;
  MelConfig config;
  config.sample_rate = static_cast<int>(c[0]);
  config.n_fft = static_cast<int>(c[1]);
  config.hop = static_cast<int>(c[2]);
  config.win = static_cast<int>(c[3]);
  config.n_mels = static_cast<int>(c[4]);
  // Every case uses fmax = sample_rate / 2: spelled 0 (the default) for the 16 kHz VITS cases, explicitly
  // for the small one, so both spellings are exercised.
  EXPECT_EQ(c[5], c[0] / 2) << name;
  config.fmax = name == "small_window" ? c[5] : 0.0;
  return config;
}

// A leaf tensor that collects its gradient in the returned slot.
std::shared_ptr<autograd::GradSlot> make_leaf(Tensor& t) {
  auto slot = std::make_shared<autograd::GradSlot>();
  slot->shape = t.shape();
  slot->dtype = t.dtype();
  t.set_grad_slot(slot);
  return slot;
}

TEST(Mel, SlaneyFilterbankMatchesLibrosa) {
  for (const std::string name : kCases) {
    SCOPED_TRACE(name);
    const MelConfig c = config_of(name);
    const GoldenTensor& expected = golden_tensor(name + ".filterbank");
    const std::vector<float> bank =
        slaney_mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.sample_rate / 2.0);
    ASSERT_EQ(expected.shape, (Shape{c.n_mels, c.n_fft / 2 + 1}));
    ASSERT_EQ(bank.size(), expected.values.size());
    double worst = 0.0;
    for (size_t i = 0; i < bank.size(); ++i) worst = std::max(worst, std::abs(bank[i] - expected.values[i]));
    EXPECT_LT(worst, 1e-6);
    // The double version differs from librosa's float32 only by that rounding (values < 0.03: ulp < 4e-9).
    const std::vector<double> bank64 =
        slaney_mel_filterbank_f64(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.sample_rate / 2.0);
    double worst64 = 0.0;
    for (size_t i = 0; i < bank.size(); ++i) worst64 = std::max(worst64, std::abs(bank64[i] - expected.values[i]));
    EXPECT_LT(worst64, 1e-8);
    // The MelSpectrogram (fmax 0 meaning sample_rate / 2) holds the same filterbank.
    EXPECT_EQ(MelSpectrogram(c).filterbank(), bank);
  }
}

TEST(Mel, FilterbankRejectsBadRanges) {
  EXPECT_THROW(slaney_mel_filterbank(16000, 1024, 80, 500.0, 400.0), Error);
  EXPECT_THROW(slaney_mel_filterbank(16000, 1024, 0, 0.0, 8000.0), Error);
}

TEST(Mel, LogMelMatchesTorch) {
  for (const std::string name : kCases) {
    SCOPED_TRACE(name);
    const MelSpectrogram mel(config_of(name));
    for (DType dtype : {DType::F32, DType::F64}) {
      const bool f32 = dtype == DType::F32;
      SCOPED_TRACE(f32 ? "f32" : "f64");
      const Tensor wave = golden_as(name + ".wave", dtype);
      const Tensor expected = golden_as(name + (f32 ? ".logmel_f32" : ".logmel_f64"), dtype);
      const Tensor got = mel.log_mel(wave);
      ASSERT_EQ(got.shape(), expected.shape());
      EXPECT_EQ(got.dtype(), dtype);
      EXPECT_EQ(mel.frames(wave.dim(1)), got.dim(2));
      EXPECT_LT(vitscuda::testing::max_abs_diff(got, expected), f32 ? 1e-4 : 1e-11);
    }
  }
}

TEST(Mel, MaskedL1GradientMatchesTorchAutograd) {
  for (const std::string name : kCases) {
    SCOPED_TRACE(name);
    const MelSpectrogram mel(config_of(name));
    for (DType dtype : {DType::F32, DType::F64}) {
      const bool f32 = dtype == DType::F32;
      SCOPED_TRACE(f32 ? "f32" : "f64");
      const std::string tag = f32 ? "_f32" : "_f64";
      Tensor wave = golden_as(name + ".wave", dtype);
      const Tensor target = golden_as(name + ".target", dtype);
      const Tensor mask = golden_as(name + ".mask", DType::F32);  // [B, frames]; the training step's masks are f32
      const Tensor mask3 = mask.reshape({mask.dim(0), 1, mask.dim(1)});
      auto slot = make_leaf(wave);
      autograd::Tape tape;
      Tensor loss;
      {
        autograd::RecordingScope recording(tape);
        loss = ops::masked_l1_loss(mel.log_mel(wave), target, mask3);
      }
      EXPECT_EQ(tape.size(), 2u);
      EXPECT_EQ(loss.numel(), 1);
      EXPECT_EQ(loss.ndim(), 0);
      const double expected_loss = golden_tensor(name + ".loss" + tag).values[0];
      const double got_loss = f32 ? loss.data<float>()[0] : loss.data<double>()[0];
      EXPECT_NEAR(got_loss, expected_loss, (f32 ? 1e-5 : 1e-12) * std::abs(expected_loss));
      tape.backward(loss);
      ASSERT_TRUE(slot->grad.defined());
      const Tensor expected_grad = golden_as(name + ".grad" + tag, dtype);
      EXPECT_LT(vitscuda::testing::relative_l2(slot->grad.reshape(expected_grad.shape()), expected_grad),
                f32 ? 1e-4 : 1e-11);
    }
  }
}

TEST(Mel, MaskedL1AcceptsTwoDimensionalMaskAndTargetGradient) {
  const GoldenTensor& m = golden_tensor("batch2.mask");
  Tensor x = golden_as("batch2.logmel_f64", DType::F64);
  Tensor y = golden_as("batch2.target", DType::F64);
  const Tensor mask = golden_as("batch2.mask", DType::F64);
  auto sx = make_leaf(x), sy = make_leaf(y);
  autograd::Tape tape;
  Tensor loss;
  {
    autograd::RecordingScope recording(tape);
    loss = ops::masked_l1_loss(x, y, mask);
  }
  EXPECT_NEAR(loss.data<double>()[0], golden_tensor("batch2.loss_f64").values[0], 1e-12);
  tape.backward(loss);
  // d/dy = -d/dx; masked frames (item 1, frames >= 7) get nothing.
  const int64_t B = m.shape[0], F = m.shape[1], M = x.dim(1);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(sy->grad.data<double>()[i], -sx->grad.data<double>()[i]);
  for (int64_t c = 0; c < M; ++c)
    for (int64_t t = 0; t < F; ++t)
      if (m.values[(B - 1) * F + t] == 0.0) {
        EXPECT_EQ(sx->grad.data<double>()[((B - 1) * M + c) * F + t], 0.0);
      }
}

TEST(Mel, LogMelOfTrimsToWholeHops) {
  const MelSpectrogram mel;  // VITS' 16 kHz defaults
  EXPECT_EQ(mel.hop(), 256);
  EXPECT_EQ(mel.n_mels(), 80);
  EXPECT_EQ(mel.bins(), 513);
  const GoldenTensor& g = golden_tensor("single.wave");
  ASSERT_EQ(g.values.size(), 4096u);
  // 4096 samples + 77 extra: S / hop = 16 frames, from the first 4096 samples only.
  std::vector<float> wave(g.values.begin(), g.values.end());
  for (int i = 0; i < 77; ++i) wave.push_back(0.25f * static_cast<float>(i % 7) - 0.5f);
  const Tensor got = mel.log_mel_of(wave);
  EXPECT_EQ(got.shape(), (Shape{80, 16}));
  EXPECT_FALSE(got.requires_grad());
  const Tensor expected = golden_as("single.logmel_f32", DType::F32).reshape({80, 16});
  EXPECT_LT(vitscuda::testing::max_abs_diff(got, expected), 1e-4);
  // Untrimmed, the frame count is the same (frames = S / hop for S >= hop) but the last frames read the
  // extra samples instead of the mirrored ones, so they differ.
  const int64_t S = static_cast<int64_t>(wave.size());
  EXPECT_EQ(mel.frames(S), 16);
  const Tensor untrimmed = mel.log_mel(Tensor::from_vector(wave, {1, S})).reshape({80, 16});
  double last_frame_change = 0.0;
  for (int64_t m = 0; m < 80; ++m)
    last_frame_change = std::max(last_frame_change, std::abs(static_cast<double>(untrimmed.data<float>()[m * 16 + 15]) -
                                                             expected.data<float>()[m * 16 + 15]));
  EXPECT_GT(last_frame_change, 1e-2);
}

TEST(Mel, OneOffLogMelAndCopiesShareThePlan) {
  const MelConfig c = config_of("small_window");
  const Tensor wave = golden_as("small_window.wave", DType::F64);
  const MelSpectrogram original(c);
  const MelSpectrogram copy = original;
  const Tensor a = log_mel(c, wave), b = copy.log_mel(wave);
  EXPECT_EQ(vitscuda::testing::max_abs_diff(a, b), 0.0);
}

TEST(Mel, RejectsBadInputs) {
  const MelSpectrogram mel;
  try {
    mel.log_mel(Tensor::zeros({300}));
    FAIL() << "a rank-1 waveform was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[batch, samples]"), std::string::npos) << e.what();
  }
  try {
    mel.log_mel(Tensor::zeros({1, 300}));
    FAIL() << "a waveform shorter than the reflect padding was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too short for the reflect padding"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mel.log_mel_of(std::vector<float>(100, 0.0f)), Error);
  const Tensor x = Tensor::zeros({2, 80, 5});
  EXPECT_THROW(ops::masked_l1_loss(x, Tensor::zeros({2, 80, 4}), Tensor::full({2, 1, 5}, 1.0)), Error);
  EXPECT_THROW(ops::masked_l1_loss(x, x, Tensor::full({2, 1, 4}, 1.0)), Error);
  EXPECT_THROW(ops::masked_l1_loss(x, x, Tensor::zeros({2, 1, 5})), Error);  // no valid frame
}

}  // namespace
}  // namespace vitscuda::model
