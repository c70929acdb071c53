// The full objective against finetune-hf-vits' own code (tools/golden/make_golden_full.py): the discriminator
// step's gradient (c_disc * L_D on the detached generated windows) and the generator's gradient of
// 35 mel + 1.5 kl + dur + L_adv + L_fm with the discriminator fixed, with the anchor's random draws injected;
// and the update FullTrainer::step applies from them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optimizer.h"
#include "io/safetensors.h"
#include "model/adversarial_losses.h"
#include "model/full_trainer.h"
#include "model/model_dir.h"
#include "golden_gradients.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::metadata_double;
using vitscuda::testing::metadata_int;
namespace fs = std::filesystem;

namespace {

double scalar(const io::SafetensorsFile& f, const std::string& name) { return f.load_f32(name).data<float>()[0]; }

struct GoldenFullStep {
  io::SafetensorsFile file;
  std::string model_dir;  // the generator's model directory with the golden discriminator beside it
  model::LoadedModel loaded;
  model::MelConfig mel;
  std::vector<model::TrainingItem> batch;
  model::TrainerOptions options;
};

GoldenFullStep load_full_step(Device device) {
  io::SafetensorsFile f = io::SafetensorsFile::open(vitscuda::testing::data_path("golden/full/step.safetensors"));
  // A model directory: the generator's files, its config with the discriminator's fields, the discriminator.
  const std::string dir = vitscuda::testing::temp_dir(std::string("full_golden_") + device_name(device));
  const std::string source = vitscuda::testing::data_path(f.metadata().at("model"));
  for (const auto& entry : fs::directory_iterator(source))
    fs::copy_file(entry.path(), dir + "/" + entry.path().filename().string(), fs::copy_options::overwrite_existing);
  nlohmann::json config = nlohmann::json::parse(model::read_file(source + "/config.json"));
  config.update(nlohmann::json::parse(f.metadata().at("discriminator_config")));
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  fs::copy_file(vitscuda::testing::data_path("golden/full/discriminator.safetensors"),
                dir + "/" + model::kDiscriminatorFileName, fs::copy_options::overwrite_existing);

  GoldenFullStep g{f, dir, model::load_model_dir(dir), {}, {}, {}};
  g.loaded.model->to(device);
  g.mel = vitscuda::testing::golden_mel_config(f);
  const Tensor ids = f.load_f32("input_ids"), mask = f.load_f32("attention_mask");
  const int64_t B = ids.dim(0), T = ids.dim(1);
  for (int64_t b = 0; b < B; ++b) {
    model::TrainingItem item;
    for (int64_t t = 0; t < T; ++t)
      if (mask.data<float>()[b * T + t] > 0.5f) item.ids.push_back(static_cast<int32_t>(ids.data<float>()[b * T + t]));
    item.wave = f.load_f32("target_wave_" + std::to_string(b)).to_float_vector();
    g.batch.push_back(item);
  }
  model::TrainStepOptions& s = g.options.step;
  s.segment_frames = metadata_int(f, "segment_frames");
  s.c_mel = metadata_double(f, "c_mel");
  s.c_kl = metadata_double(f, "c_kl");
  s.c_dur = metadata_double(f, "c_dur");
  s.c_gen = metadata_double(f, "c_gen");
  s.c_fm = metadata_double(f, "c_fm");
  s.c_disc = metadata_double(f, "c_disc");
  s.posterior_noise = f.load_f32("posterior_noise");
  s.duration_noise = f.load_f32("duration_noise");
  const Tensor starts = f.load_f32("segment_starts");
  for (int64_t i = 0; i < starts.numel(); ++i)
    s.segment_starts.push_back(static_cast<int64_t>(starts.data<float>()[i]));
  g.options.model_dir = dir;
  g.options.disc_warmup_steps = 0;
  return g;
}

class GoldenFullGradients : public ::testing::TestWithParam<Device> {};

TEST_P(GoldenFullGradients, DiscriminatorAndGeneratorGradientsMatchTheAnchor) {
  const Device device = GetParam();
  if (device == Device::CUDA) {
    VITSCUDA_REQUIRE_CUDA();
  }
  GoldenFullStep g = load_full_step(device);
  model::VitsModel& vits = *g.loaded.model;
  model::FullTrainer trainer(vits, model::MelSpectrogram(g.mel), g.options, 0);
  ASSERT_TRUE(trainer.discriminator_loaded());
  model::Discriminator& disc = trainer.discriminator();
  Rng rng(0);  // every draw is injected: the stream must not be used

  // (a) The discriminator step's gradient: c_disc * L_D with the generated windows detached.
  {
    model::VaeStepResult r;
    {
      autograd::NoGradScope no_grad;
      r = model::vae_training_forward(vits, trainer.mel(), g.batch, g.options.step, rng);
    }
    const Tensor real = model::target_waveform_windows(g.batch, r.segment_starts, g.options.step.segment_frames,
                                                       trainer.mel().hop(), device);
    disc.params().zero_grad();
    autograd::Tape tape;
    Tensor loss;
    double disc_loss = 0;
    {
      autograd::RecordingScope recording(tape);
      const model::AdversarialLoss l =
          model::discriminator_loss(disc.forward(real).scores, disc.forward(r.waveform.detach()).scores);
      disc_loss = l.loss.to_float_vector()[0];
      loss = ops::scale(l.loss, g.options.step.c_disc);
    }
    tape.backward(loss);
    const double expected = scalar(g.file, "loss_disc");
    EXPECT_LT(std::fabs(disc_loss - expected), 1e-5 * std::max(1.0, std::fabs(expected))) << "L_D";
    // fp32 on both sides through six stacked convs per sub-discriminator and the decoder's windows.
    vitscuda::testing::expect_gradients_match(g.file, "grad_disc.", disc.params(), 1e-4, 1e-5, "discriminator step");
  }

  // (b) The generator's gradient with the discriminator fixed: the objective's own forward.
  vits.params().zero_grad();
  autograd::Tape tape;
  model::ForwardLoss f;
  {
    autograd::RecordingScope recording(tape);
    f = trainer.forward_once(g.batch, rng);
  }
  EXPECT_EQ(rng.offset(), 0u) << "the step drew random numbers although every draw was given";
  const char* names[] = {"loss_mel", "loss_kl", "loss_dur", "loss_adv", "loss_fm"};
  ASSERT_EQ(f.terms.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const double expected = scalar(g.file, names[i]), got = f.terms[i].second.to_float_vector()[0];
    std::printf("  %s (%s): %.7f (anchor %.7f)\n", names[i], f.terms[i].first.c_str(), got, expected);
    // fp32 sums over a few hundred terms (the feature maps: a few thousand): 1e-5 relative.
    EXPECT_LT(std::fabs(got - expected), 1e-5 * std::max(1.0, std::fabs(expected))) << names[i];
  }
  const double total = scalar(g.file, "loss_total");
  EXPECT_LT(std::fabs(f.total.to_float_vector()[0] - total), 1e-5 * total) << "loss_total";
  tape.backward(f.total);
  // fp32 on both sides through ~40 generator layers and the discriminator's backward into the waveform.
  vitscuda::testing::expect_gradients_match(g.file, "grad.", vits.params(), 1e-4, 1e-5, "generator");
}

INSTANTIATE_TEST_SUITE_P(Devices, GoldenFullGradients, ::testing::Values(Device::CPU, Device::CUDA),
                         [](const ::testing::TestParamInfo<Device>& info) {
                           return std::string(device_name(info.param));
                         });

// One FullTrainer::step from the golden state: the discriminator's update is AdamW's first step on exactly the
// golden D gradient (so its gradients were zeroed before the D backward: they are filled with garbage first),
// clipped to norm 1: with g' = c g (c the clip factor), p' = p (1 - lr wd) - lr g' / (|g'| + eps).
TEST(FullTrainer, StepZeroesTheDiscriminatorsGradientsFirstAndUpdatesBothFromTheirOwnLosses) {
  GoldenFullStep g = load_full_step(Device::CPU);
  model::VitsModel& vits = *g.loaded.model;
  const double lr = 1e-3;
  g.options.learning_rate = lr;
  g.options.grad_clip = 1.0;
  model::FullTrainer trainer(vits, model::MelSpectrogram(g.mel), g.options, 0);
  ParameterStore& d = trainer.discriminator().params();
  const std::vector<float> before = d.flat().to_float_vector();
  const std::vector<float> generator_before = vits.params().flat().to_float_vector();
  d.grads().fill(1e3);  // stale gradients a step that did not zero them first would add in

  const model::StepStats st = trainer.step({g.batch}, 0);
  ASSERT_TRUE(st.finite);
  EXPECT_EQ(trainer.discriminator_optimizer().step_count(), 1);
  EXPECT_EQ(trainer.updates(), 1);
  ASSERT_EQ(st.terms.size(), 8u);
  EXPECT_EQ(st.terms[5].name, "disc");
  EXPECT_NEAR(st.terms[5].value, scalar(g.file, "loss_disc"), 1e-5 * scalar(g.file, "loss_disc"))
      << "L_D is reported on sg(fake) before the discriminator's update";
  EXPECT_NEAR(st.terms[0].value, scalar(g.file, "loss_mel"), 1e-5 * scalar(g.file, "loss_mel"));

  const std::vector<float> after = d.flat().to_float_vector();
  const double wd = trainer.discriminator_optimizer().config().weight_decay;
  const double eps = trainer.discriminator_optimizer().config().eps;
  double norm = 0;
  for (const ParameterInfo& p : d.params())
    for (const float v : g.file.load_f32("grad_disc." + p.name).to_float_vector()) norm += static_cast<double>(v) * v;
  const double clip = clip_coefficient(std::sqrt(norm), g.options.grad_clip);
  int64_t checked = 0, wrong = 0;
  for (const ParameterInfo& p : d.params()) {
    const std::vector<float> grad = g.file.load_f32("grad_disc." + p.name).to_float_vector();
    double rms = 0;
    for (const float v : grad) rms += static_cast<double>(v) * v;
    rms = std::sqrt(rms / static_cast<double>(grad.size()));
    for (size_t i = 0; i < grad.size(); ++i) {
      // Elements whose gradient is far from 0 (rounding could flip the sign of the tiny ones).
      if (std::fabs(grad[i]) < 1e-2 * rms) continue;
      const size_t at = static_cast<size_t>(p.offset) + i;
      const double clipped = clip * grad[i];
      const double expected = before[at] * (1.0 - lr * wd) - lr * clipped / (std::fabs(clipped) + eps);
      ++checked;
      // float32 parameters of magnitude <= ~1 (rounding ~1e-7) and gradients within ~1e-5 of the anchor's: far
      // below 1% of lr.
      if (std::fabs(after[at] - expected) > 1e-2 * lr && wrong++ < 5)
        ADD_FAILURE() << p.name << "[" << i << "]: " << after[at] << ", expected " << expected;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(checked, static_cast<int64_t>(before.size() / 2));
  const std::vector<float> generator_after = vits.params().flat().to_float_vector();
  EXPECT_NE(generator_before, generator_after) << "the generator's update was applied";
}

}  // namespace

namespace {

// Micro-batches (--grad-accum): every micro-batch's generator forward is kept until the discriminator's update,
// then each is continued on its own tape; one update of each model, both losses averaged over the micro-batches.
TEST(FullTrainer, MicroBatchesGiveOneUpdateOfEachModel) {
  GoldenFullStep g = load_full_step(Device::CPU);
  model::TrainStepOptions& s = g.options.step;
  s.posterior_noise = Tensor();  // drawn per micro-batch from the trainer's stream
  s.duration_noise = Tensor();
  s.segment_starts.clear();
  model::FullTrainer trainer(*g.loaded.model, model::MelSpectrogram(g.mel), g.options, 5);
  const std::vector<float> disc_before = trainer.discriminator().params().flat().to_float_vector();
  const model::StepStats st = trainer.step({{g.batch[0]}, {g.batch[1]}}, 0);
  ASSERT_TRUE(st.finite);
  EXPECT_EQ(st.items, 2);
  EXPECT_EQ(trainer.updates(), 1);
  EXPECT_EQ(trainer.discriminator_optimizer().step_count(), 1);
  EXPECT_NE(disc_before, trainer.discriminator().params().flat().to_float_vector());
  EXPECT_GT(trainer.rng_offset(), 0u);
  double weighted = 0;
  const double weights[] = {s.c_mel, s.c_kl, s.c_dur, s.c_gen, s.c_fm};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_TRUE(std::isfinite(st.terms[i].value)) << st.terms[i].name;
    weighted += weights[i] * st.terms[i].value;
  }
  // The total is the mean of the micro-batches' weighted losses: the weighted sum of the mean terms (fp32 sums).
  EXPECT_NEAR(st.loss, weighted, 1e-5 * st.loss);
}

}  // namespace
