// Golden losses, alignment and gradients: the vae training step against finetune-hf-vits' own training forward
// and losses under torch autograd (tools/golden/make_golden_vae.py), with the anchor's random draws injected.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/autograd.h"
#include "io/safetensors.h"
#include "model/model_dir.h"
#include "model/vae_step.h"
#include "golden_gradients.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::metadata_double;
using vitscuda::testing::metadata_int;

namespace {

struct GoldenVaeStep {
  model::LoadedModel loaded;
  io::SafetensorsFile file;
  model::MelSpectrogram mel;
  std::vector<model::TrainingItem> batch;
  model::TrainStepOptions options;
};

double scalar(const io::SafetensorsFile& f, const std::string& name) { return f.load_f32(name).data<float>()[0]; }

GoldenVaeStep load_vae_step(const std::string& fixture) {
  io::SafetensorsFile f = io::SafetensorsFile::open(vitscuda::testing::data_path("golden/vae/" + fixture + "/step.safetensors"));
  const model::MelConfig mc = vitscuda::testing::golden_mel_config(f);
  const std::string model_dir = vitscuda::testing::data_path(f.metadata().at("model"));
  GoldenVaeStep g{model::load_model_dir(model_dir), f, model::MelSpectrogram(mc), {}, {}};
  const Tensor ids = f.load_f32("input_ids"), mask = f.load_f32("attention_mask");
  const int64_t B = ids.dim(0), T = ids.dim(1);
  const Tensor speakers = f.find("speaker_ids") ? f.load_f32("speaker_ids") : Tensor();
  for (int64_t b = 0; b < B; ++b) {
    model::TrainingItem item;
    for (int64_t t = 0; t < T; ++t)
      if (mask.data<float>()[b * T + t] > 0.5f) item.ids.push_back(static_cast<int32_t>(ids.data<float>()[b * T + t]));
    item.wave = f.load_f32("target_wave_" + std::to_string(b)).to_float_vector();
    if (speakers.defined()) item.speaker_id = static_cast<int>(speakers.data<float>()[b]);
    g.batch.push_back(item);
  }
  g.options.segment_frames = metadata_int(f, "segment_frames");
  g.options.c_mel = metadata_double(f, "c_mel");
  g.options.c_kl = metadata_double(f, "c_kl");
  g.options.c_dur = metadata_double(f, "c_dur");
  g.options.posterior_noise = f.load_f32("posterior_noise");
  if (f.find("duration_noise")) g.options.duration_noise = f.load_f32("duration_noise");
  const Tensor starts = f.load_f32("segment_starts");
  for (int64_t i = 0; i < starts.numel(); ++i)
    g.options.segment_starts.push_back(static_cast<int64_t>(starts.data<float>()[i]));
  return g;
}

struct VaeCase {
  std::string fixture;
  Device device = Device::CPU;
};

void PrintTo(const VaeCase& c, std::ostream* os) { *os << c.fixture << " on " << device_name(c.device); }

class GoldenVaeGradients : public ::testing::TestWithParam<VaeCase> {};

TEST_P(GoldenVaeGradients, AlignmentLossTermsAndEveryGradientMatchTheAnchor) {
  const VaeCase& c = GetParam();
  if (c.device == Device::CUDA) {
    VITSCUDA_REQUIRE_CUDA();
  }
  GoldenVaeStep g = load_vae_step(c.fixture);
  model::VitsModel& vits = *g.loaded.model;
  vits.to(c.device);
  vits.params().enable_grad(model::trainable_in_vae_mode);

  autograd::Tape tape;
  Rng rng(0);  // every draw is injected: the stream must not be used
  model::VaeStepResult r;
  {
    autograd::RecordingScope recording(tape);
    r = model::vae_training_forward(vits, g.mel, g.batch, g.options, rng);
  }
  EXPECT_EQ(rng.offset(), 0u) << "the step drew random numbers although every draw was given";

  // The alignment is a discrete search: identical, frame by frame.
  const Tensor alignment = g.file.load_f32("alignment");
  const int64_t F = alignment.dim(1);
  ASSERT_EQ(static_cast<int64_t>(r.alignment.size()), alignment.numel());
  int64_t differing = 0;
  for (int64_t i = 0; i < alignment.numel(); ++i)
    if (r.alignment[i] != static_cast<int32_t>(alignment.data<float>()[i])) {
      if (differing++ < 5) ADD_FAILURE() << "item " << i / F << " frame " << i % F << ": token " << r.alignment[i]
                                         << ", the anchor's " << alignment.data<float>()[i];
    }
  ASSERT_EQ(differing, 0) << "the alignment differs; the gradients cannot be compared";

  // fp32 on both sides, sums over a few hundred terms: 1e-5 relative.
  const struct {
    const char* name;
    Tensor ours;
  } terms[] = {{"loss_mel", r.mel}, {"loss_kl", r.kl}, {"loss_dur", r.duration}, {"loss_total", r.total}};
  for (const auto& t : terms) {
    const double expected = scalar(g.file, t.name), got = t.ours.to_float_vector()[0];
    std::printf("  %s %s: %.7f (anchor %.7f)\n", c.fixture.c_str(), t.name, got, expected);
    EXPECT_LT(std::fabs(got - expected), 1e-5 * std::max(1.0, std::fabs(expected))) << t.name;
  }

  tape.backward(r.total);
  for (const ParameterInfo& p : vits.params().params())
    ASSERT_TRUE(vits.params().trainable(p.name)) << p.name << " is frozen in the vae objective";
  // fp32 on both sides through ~40 layers; rows of tokens absent from the batch are 0 on both sides.
  vitscuda::testing::expect_gradients_match(g.file, "grad.", vits.params(), 1e-4, 1e-5, c.fixture);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenVaeGradients,
                         ::testing::Values(VaeCase{"sdp"}, VaeCase{"dp_multispeaker"}, VaeCase{"sdp", Device::CUDA},
                                           VaeCase{"dp_multispeaker", Device::CUDA}),
                         [](const ::testing::TestParamInfo<VaeCase>& info) {
                           return info.param.fixture + (info.param.device == Device::CUDA ? "_cuda" : "");
                         });

}  // namespace
