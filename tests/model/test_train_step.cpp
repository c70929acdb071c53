// Golden gradients: the mel-mode training step against torch autograd on transformers'
// VitsModel modules (tools/golden/make_golden_gradients.py), loss and every parameter gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "engine/autograd.h"
#include "io/safetensors.h"
#include "model/model_dir.h"
#include "model/train_step.h"
#include "golden_gradients.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::metadata_double;
using vitscuda::testing::metadata_int;

namespace {

struct GoldenStep {
  model::LoadedModel loaded;
  io::SafetensorsFile file;
  model::MelSpectrogram mel;
  std::vector<model::TrainingItem> batch;
  model::TrainStepOptions options;
};


GoldenStep load_step(const std::string& name) {
  const std::string path = vitscuda::testing::data_path("golden/tiny_sdp_train/" + name);
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const model::MelConfig mc = vitscuda::testing::golden_mel_config(f);
  GoldenStep g{model::load_model_dir(vitscuda::testing::data_path("golden/tiny_sdp")), f, model::MelSpectrogram(mc), {}, {}};
  Tensor ids = f.load_f32("input_ids"), mask = f.load_f32("attention_mask");
  const int64_t B = ids.dim(0), T = ids.dim(1);
  for (int64_t b = 0; b < B; ++b) {
    model::TrainingItem item;
    for (int64_t t = 0; t < T; ++t)
      if (mask.data<float>()[b * T + t] > 0.5f) item.ids.push_back(static_cast<int32_t>(ids.data<float>()[b * T + t]));
    item.wave = f.load_f32("target_wave_" + std::to_string(b)).to_float_vector();
    g.batch.push_back(item);
  }
  g.options.noise_scale = metadata_double(f, "noise_scale");
  g.options.noise_scale_duration = metadata_double(f, "noise_scale_duration");
  g.options.segment_frames = metadata_int(f, "segment_frames");
  g.options.duration_noise = f.load_f32("duration_noise");
  g.options.prior_noise = f.load_f32("prior_noise");
  if (f.find("segment_starts")) {
    Tensor s = f.load_f32("segment_starts");
    for (int64_t i = 0; i < s.numel(); ++i) g.options.segment_starts.push_back(static_cast<int64_t>(s.data<float>()[i]));
  }
  return g;
}

struct GradientCase {
  std::string file;
  Device device = Device::CPU;
  bool recompute_decoder = false;  // the same gradients must come out of the recomputed decoder
};

void PrintTo(const GradientCase& c, std::ostream* os) {
  *os << c.file << " on " << device_name(c.device) << (c.recompute_decoder ? ", decoder recomputed" : "");
}

class GoldenGradients : public ::testing::TestWithParam<GradientCase> {};

TEST_P(GoldenGradients, LossAndEveryParameterGradientMatchTorch) {
  const GradientCase& c = GetParam();
  if (c.device == Device::CUDA) {
    VITSCUDA_REQUIRE_CUDA();
  }
  GoldenStep g = load_step(c.file);
  g.options.recompute_decoder = c.recompute_decoder;
  model::VitsModel& vits = *g.loaded.model;
  vits.to(c.device);
  vits.params().enable_grad(model::trainable_in_mel_mode);

  // The filterbank is ours; torch's came from librosa.
  Tensor fb = g.file.load_f32("mel_filterbank");
  ASSERT_EQ(static_cast<size_t>(fb.numel()), g.mel.filterbank().size());
  double fb_err = 0;
  for (int64_t i = 0; i < fb.numel(); ++i)
    fb_err = std::max(fb_err, std::fabs(static_cast<double>(fb.data<float>()[i]) - g.mel.filterbank()[i]));
  EXPECT_LT(fb_err, 1e-6);

  autograd::Tape tape;
  Rng rng(0);
  model::TrainStepResult r;
  {
    autograd::RecordingScope recording(tape);
    r = model::mel_training_forward(vits, g.mel, g.batch, g.options, rng);
  }
  // Durations are integers from largest-remainder rounding: exact.
  Tensor durations = g.file.load_f32("durations");
  const int64_t T = durations.dim(2);
  for (size_t b = 0; b < r.durations.size(); ++b)
    for (size_t t = 0; t < r.durations[b].size(); ++t)
      EXPECT_EQ(r.durations[b][t], static_cast<int32_t>(durations.data<float>()[b * T + t])) << "item " << b << " token " << t;

  Tensor gen = g.file.load_f32("generated_logmel");
  ASSERT_EQ(r.generated_logmel.shape(), gen.shape());
  // Log-mel of a generated waveform in fp32: the log magnifies rounding in quiet bands (see test_mel.cpp).
  EXPECT_LT(vitscuda::testing::max_abs_diff(r.generated_logmel, gen), 1e-3);

  const double expected_loss = g.file.load_f32("loss").data<float>()[0];
  const double loss = r.loss.to_float_vector()[0];
  std::printf("  %s: loss %.7f (torch %.7f), relative error %.2e\n", c.file.c_str(), loss, expected_loss,
              std::fabs(loss - expected_loss) / expected_loss);
  EXPECT_LT(std::fabs(loss - expected_loss) / expected_loss, 1e-5);

  tape.backward(r.loss);
  // fp32 on both sides; a float64 torch run differs from its float32 one by <= 3e-6 per tensor.
  vitscuda::testing::expect_gradients_match(g.file, "grad.", vits.params(), 1e-4, 1e-6, c.file);
}

INSTANTIATE_TEST_SUITE_P(Steps, GoldenGradients,
                         ::testing::Values(GradientCase{"step_whole.safetensors"},
                                           GradientCase{"step_segment.safetensors"},
                                           GradientCase{"step_whole.safetensors", Device::CPU, true},
                                           GradientCase{"step_whole.safetensors", Device::CUDA},
                                           GradientCase{"step_segment.safetensors", Device::CUDA},
                                           GradientCase{"step_whole.safetensors", Device::CUDA, true}),
                         [](const ::testing::TestParamInfo<GradientCase>& info) {
                           std::string n = info.param.file.find("whole") != std::string::npos ? "whole_utterance"
                                                                                              : "segment";
                           if (info.param.device == Device::CUDA) n += "_cuda";
                           if (info.param.recompute_decoder) n += "_recomputed_decoder";
                           return n;
                         });

}  // namespace
