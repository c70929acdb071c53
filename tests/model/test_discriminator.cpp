// The discriminator (model/discriminator.*) and its losses (model/adversarial_losses.*) against finetune-hf-vits'
// own VitsDiscriminator and run_vits_finetuning.py losses: tests/data/golden/discriminator/, written by
// tools/golden/make_discriminator_cases.py (B 2 x 512 samples, 6 sub-discriminators with small channels).
//
// Tolerance: relative L2 1e-4 per tensor. The references were computed in float64; we compute in float32, so
// the error is our float32 rounding alone. torch's own float32 run of the same cases differs from the float64
// references by at most 3.2e-5 (recorded in the file's metadata; the worst is the gradient of a final conv's
// single weight_g, a dot product with cancellation), and a correct float32 implementation lands in the same
// range (ours, measured: 1.1e-5 worst, the same weight_g; 4e-6 for everything else); 1e-4 leaves a margin while
// any wrong index, padding, group or fold-back is an O(1) error (dropping reflect_pad's fold-back: 4e-2).
// On CUDA the convs may run cuDNN's FFT or Winograd algorithms, ~1e-5 relative each (tests/support/op_cases.h,
// kCudnn), through six stacked convs and their backward: 1e-3 (not yet measured on a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "io/safetensors.h"
#include "model/adversarial_losses.h"
#include "model/discriminator.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

using testing::data_path;
using testing::error_of;
using testing::relative_l2;

constexpr double kTolerance = 1e-4;      // see the header comment
constexpr double kCudaTolerance = 1e-3;  // likewise
// The loss values: sums of a few thousand float32 terms, accumulated in float or double: ~1e-6 relative.
constexpr double kLossTolerance = 1e-5;

const std::string kDir = "golden/discriminator/";

io::VitsConfig golden_config(const io::SafetensorsFile& cases) {
  return io::VitsConfig::from_json(nlohmann::json::parse(cases.metadata().at("config")), "cases.safetensors");
}

// Our period layout ([B, p, C, H] maps, column-major scores) in torch's ([B, C, H, p], row-major).
Tensor torch_layout_fmap(const Tensor& ours) {
  return ops::transpose(ops::transpose(ours, 1, 2), 2, 3);
}
Tensor torch_layout_score(const Tensor& ours, int period) {
  const int64_t B = ours.dim(0), H = ours.dim(1) / period;
  return ops::transpose(ours.reshape({B, period, H}), 1, 2).reshape({B, H * period});
}

Tensor leaf(Tensor t) {
  auto slot = std::make_shared<autograd::GradSlot>();
  slot->shape = t.shape();
  slot->device = t.device();
  t.set_grad_slot(slot);
  return t;
}

struct Golden {
  io::SafetensorsFile cases = io::SafetensorsFile::open(data_path(kDir + "cases.safetensors"));
  std::unique_ptr<model::Discriminator> disc;
  Device device;
  double tolerance;
  explicit Golden(Device d) : device(d), tolerance(d == Device::CUDA ? kCudaTolerance : kTolerance) {
    disc = model::load_discriminator_file(data_path(kDir + "discriminator.safetensors"), golden_config(cases));
    disc->to(device);
    disc->params().enable_grad([](const std::string&) { return true; });
  }
  Tensor load(const std::string& name) const { return cases.load_f32(name).to(device); }
  int period_of(int k) const { return disc->config().discriminator_periods[k - 1]; }  // k >= 1: scale is 0
};

class DiscriminatorGolden : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::CUDA) VITSCUDA_REQUIRE_CUDA();
  }
};

TEST_P(DiscriminatorGolden, ScoresFeatureMapsLossAndParameterGradients) {
  Golden g(GetParam());
  const double kTolerance = g.tolerance;
  ASSERT_EQ(g.disc->num_discriminators(), std::stoi(g.cases.metadata().at("sub_discriminators")));
  ASSERT_TRUE(g.disc->has_scale_discriminator());
  const Tensor real = g.load("real"), fake = g.load("fake");
  autograd::Tape tape;
  model::DiscriminatorOutput r, f;
  model::AdversarialLoss loss;
  {
    autograd::RecordingScope recording(tape);
    r = g.disc->forward(real);
    f = g.disc->forward(fake);  // sg(fake): the waveform has no gradient slot
    loss = model::discriminator_loss(r.scores, f.scores);
  }
  const double expected = g.cases.load_f32("loss_disc").to_float_vector()[0];
  EXPECT_NEAR(loss.loss.to(Device::CPU).to_float_vector()[0], expected, kLossTolerance * std::fabs(expected));
  for (int k = 0; k < g.disc->num_discriminators(); ++k) {
    const std::string ks = std::to_string(k);
    for (const auto& [side, out] : {std::pair<std::string, model::DiscriminatorOutput*>{"real", &r}, {"fake", &f}}) {
      const Tensor score = k == 0 ? out->scores[k] : torch_layout_score(out->scores[k], g.period_of(k));
      EXPECT_LT(relative_l2(score, g.cases.load_f32("score." + side + "." + ks)), kTolerance)
          << g.disc->name(k) << " " << side << " score";
      // Scale [1, 8, 32, 64]: 5 convs + final; periods [1, 4, 8, 16, 16]: 5 convs + final.
      ASSERT_EQ(out->feature_maps[k].size(), 6u) << g.disc->name(k);
      for (size_t l = 0; l < out->feature_maps[k].size(); ++l) {
        const Tensor fmap = k == 0 ? out->feature_maps[k][l] : torch_layout_fmap(out->feature_maps[k][l]);
        const Tensor expected_map = g.cases.load_f32("fmap." + side + "." + ks + "." + std::to_string(l));
        ASSERT_EQ(fmap.shape(), expected_map.shape()) << g.disc->name(k) << " map " << l;
        EXPECT_LT(relative_l2(fmap, expected_map), kTolerance) << g.disc->name(k) << " " << side << " map " << l;
      }
    }
  }
  tape.backward(loss.loss);
  int compared = 0;
  for (const ParameterInfo& p : g.disc->params().params()) {
    const Tensor expected_grad = g.cases.load_f32("grad_disc." + p.name);
    EXPECT_LT(relative_l2(g.disc->params().grad(p.name), expected_grad), kTolerance) << p.name;
    ++compared;
  }
  EXPECT_EQ(compared, 6 * 3 * 6);  // 6 sub-discriminators x 6 convs x (g, v, bias)
}

TEST_P(DiscriminatorGolden, AdversarialAndFeatureMatchingGradientOfTheGeneratedWaveform) {
  Golden g(GetParam());
  const double kTolerance = g.tolerance;
  const Tensor real = g.load("real");
  const Tensor fake = leaf(g.load("fake"));
  autograd::Tape tape;
  model::AdversarialLoss adv, fm;
  Tensor total;
  {
    autograd::RecordingScope recording(tape);
    const model::DiscriminatorOutput r = g.disc->forward(real);
    const model::DiscriminatorOutput f = g.disc->forward(fake);
    adv = model::generator_adversarial_loss(f.scores);
    fm = model::feature_matching_loss(r.feature_maps, f.feature_maps);
    total = ops::add(adv.loss, fm.loss);
  }
  for (const auto& [name, value] : {std::pair<std::string, Tensor>{"loss_adv", adv.loss}, {"loss_fm", fm.loss}}) {
    const double expected = g.cases.load_f32(name).to_float_vector()[0];
    EXPECT_NEAR(value.to(Device::CPU).to_float_vector()[0], expected, kLossTolerance * std::fabs(expected)) << name;
  }
  EXPECT_EQ(adv.terms.size(), 6u);
  EXPECT_EQ(fm.terms.size(), 6u);
  tape.backward(total);
  EXPECT_LT(relative_l2(fake.grad_slot()->accumulator(), g.cases.load_f32("grad_fake")), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Devices, DiscriminatorGolden, ::testing::Values(Device::CPU, Device::CUDA),
                         [](const ::testing::TestParamInfo<Device>& info) {
                           return std::string(info.param == Device::CUDA ? "cuda" : "cpu");
                         });

TEST(DiscriminatorLosses, FeatureMatchingStopsTheGradientAtTheRealMaps) {
  const Tensor real = leaf(Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {1, 2, 3}));
  const Tensor fake = leaf(Tensor::from_vector(std::vector<float>{2, 2, 1, 4, 7, 6}, {1, 2, 3}));
  autograd::Tape tape;
  model::AdversarialLoss fm;
  {
    autograd::RecordingScope recording(tape);
    fm = model::feature_matching_loss({{real}}, {{fake}});
  }
  // 2 * mean(|real - fake|) = 2 * (1 + 0 + 2 + 0 + 2 + 0) / 6.
  EXPECT_NEAR(fm.loss.to_float_vector()[0], 2.0 * 5.0 / 6.0, 1e-6);
  tape.backward(fm.loss);
  // d/dfake = 2 * sign(fake - real) / 6, 0 where equal (torch's sign(0)); nothing reaches the real map.
  const std::vector<float> expected{2.f / 6, 0, -2.f / 6, 0, 2.f / 6, 0};
  const std::vector<float> got = fake.grad_slot()->accumulator().to_float_vector();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-7) << i;
  EXPECT_FALSE(real.grad_slot()->grad.defined());
}

TEST(DiscriminatorLosses, LeastSquaresTermsAndMeanScores) {
  const Tensor real = Tensor::from_vector(std::vector<float>{1, 0, 2, 1}, {2, 2});  // (1 - x)^2: 0 1 1 0
  const Tensor fake = Tensor::from_vector(std::vector<float>{0.5f, -0.5f}, {2, 1});  // x^2: .25 .25
  const model::AdversarialLoss d = model::discriminator_loss({real}, {fake});
  EXPECT_NEAR(d.loss.to_float_vector()[0], 0.5 + 0.25, 1e-7);
  ASSERT_EQ(d.terms.size(), 2u);
  EXPECT_NEAR(d.terms[0].to_float_vector()[0], 0.5, 1e-7);
  EXPECT_NEAR(d.terms[1].to_float_vector()[0], 0.25, 1e-7);
  // (1 - 0.5)^2 and (1 + 0.5)^2: mean 1.25.
  EXPECT_NEAR(model::generator_adversarial_loss({fake}).loss.to_float_vector()[0], 1.25, 1e-7);
  EXPECT_EQ(model::mean_scores({real, fake}), (std::vector<double>{1.0, 0.0}));
  EXPECT_NE(error_of([&] { model::discriminator_loss({real}, {}); }).find("1 real and 0 generated"), std::string::npos);
}

// ------------------------------------------------------------------ structure and initialisation

TEST(Discriminator, SegmentScoreLengthsAndParameterCountOfTheDefaultConfig) {
  // Output lengths depend on kernels, strides and paddings only: small channels, the default structure.
  io::VitsConfig c;
  c.discriminator_period_channels = {1, 2, 2, 2, 2};
  c.discriminator_scale_channels = {1, 4, 16, 64, 256};
  model::Discriminator small(c);
  small.initialize(7);
  const model::DiscriminatorOutput out = small.forward(testing::uniform_tensor({1, 1, 8192}, 3));
  // The heights of docs (full_objective.md section 4.1) for an 8192-sample segment, and torch's for the same.
  std::vector<int64_t> lengths;
  for (const Tensor& s : out.scores) lengths.push_back(s.dim(1));
  EXPECT_EQ(lengths, (std::vector<int64_t>{32, 102, 102, 105, 105, 110}));
  EXPECT_EQ(out.feature_maps[0].size(), 7u);
  EXPECT_EQ(out.feature_maps[1].size(), 6u);
  EXPECT_EQ(out.feature_maps[1][0].shape(), (Shape{1, 2, 2, 1366}));  // [B, p, C, H]
  // torch: VitsDiscriminator(VitsConfig()) after apply_weight_norm has 46,747,132 parameters (46,730,118
  // plain, plus one weight_g per output channel).
  const model::Discriminator full{io::VitsConfig{}};
  EXPECT_EQ(full.params().count(), 46747132);
  EXPECT_EQ(full.num_discriminators(), 6);
  EXPECT_EQ(full.name(0), "scale");
  EXPECT_EQ(full.name(5), "period_11");
  EXPECT_EQ(full.params().info("discriminator.discriminators.0.convs.4.weight_v").shape, (Shape{1024, 4, 41}));
  EXPECT_EQ(full.params().info("discriminator.discriminators.5.final_conv.weight_g").shape, (Shape{1, 1, 1, 1}));
  // torch, counting 2 * output elements * weight[0].numel() over every Conv1d / Conv2d of that discriminator's
  // forward on [1, 1, 8192] (forward hooks).
  EXPECT_DOUBLE_EQ(model::discriminator_forward_flops(io::VitsConfig{}, 1, 8192), 9919301376.0);
}

TEST(Discriminator, NullScaleChannelsLeaveOnlyThePeriodDiscriminators) {
  io::VitsConfig c;
  c.discriminator_scale_channels.clear();
  c.discriminator_period_channels = {1, 2, 2};
  c.discriminator_periods = {3, 5};
  const model::Discriminator disc(c);
  EXPECT_EQ(disc.num_discriminators(), 2);
  EXPECT_EQ(disc.name(0), "period_3");
  EXPECT_TRUE(disc.params().has("discriminator.discriminators.0.final_conv.bias"));
  EXPECT_FALSE(disc.params().has("discriminator.discriminators.2.final_conv.bias"));
}

TEST(Discriminator, InitialisationIsTorchsDefaultWithWeightNormKeepingTheWeight) {
  io::VitsConfig c;
  c.discriminator_period_channels = {1, 4, 8};
  c.discriminator_scale_channels = {1, 8, 32};
  model::Discriminator disc(c);
  disc.initialize(11);
  for (const std::string conv : {"discriminator.discriminators.0.convs.1", "discriminator.discriminators.2.convs.1"}) {
    const Tensor g = disc.params().get(conv + ".weight_g"), v = disc.params().get(conv + ".weight_v");
    const int64_t fan_in = v.numel() / v.dim(0);
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    double largest = 0;
    for (float x : v.to_float_vector()) largest = std::max(largest, std::fabs(static_cast<double>(x)));
    EXPECT_LE(largest, bound) << conv;
    EXPECT_GT(largest, 0.5 * bound) << conv;  // drawn, not zero
    EXPECT_LT(relative_l2(ops::weight_norm(g, v), v), 1e-6) << conv << ": weight norm must leave W = v";
    for (float b : disc.params().get(conv + ".bias").to_float_vector()) EXPECT_LE(std::fabs(b), bound);
  }
  model::Discriminator again(c);
  again.initialize(11);
  EXPECT_EQ(again.params().flat().to_float_vector(), disc.params().flat().to_float_vector());
}

TEST(Discriminator, RefusesAWaveformOfAnotherShape) {
  io::VitsConfig c;
  c.discriminator_period_channels = {1, 2};
  c.discriminator_scale_channels = {1, 4};
  const model::Discriminator disc(c);
  EXPECT_NE(error_of([&] { disc.forward(Tensor::zeros({2, 3, 64})); }).find("must be [B, 1, N] or [B, N]"),
            std::string::npos);
}

// ------------------------------------------------------------------ checkpoints

TEST(DiscriminatorImport, PlainWeightsBecomeVAndTheirNorm) {
  const io::SafetensorsFile train = io::SafetensorsFile::open(data_path(kDir + "tiny_train/model.safetensors"));
  const io::VitsConfig config = io::VitsConfig::from_file(data_path(kDir + "tiny_train/config.json"));
  model::Discriminator disc(config);
  const model::DiscriminatorImport imp = model::import_discriminator(train, disc);
  EXPECT_EQ(imp.layout, model::DiscriminatorLayout::Plain);
  EXPECT_EQ(imp.tensors, 72);  // 6 sub-discriminators x 6 convs x (weight, bias)
  const std::string conv = "discriminator.discriminators.3.convs.2";
  const Tensor w = train.load_f32(conv + ".weight");
  EXPECT_EQ(disc.params().get(conv + ".weight_v").to_float_vector(), w.to_float_vector());
  EXPECT_LT(relative_l2(ops::weight_norm(disc.params().get(conv + ".weight_g"), disc.params().get(conv + ".weight_v")),
                        w),
            1e-6);
  // Folding back to plain weights gives the file's bytes.
  std::map<std::string, std::vector<uint8_t>> written;
  for (const io::SafetensorsWriteEntry& e : model::discriminator_entries(disc, model::DiscriminatorLayout::Plain, {}))
    written[e.name] = e.bytes;
  int compared = 0;
  for (const io::SafetensorsEntry& e : train.entries()) {
    if (e.name.rfind("discriminator.", 0) != 0) continue;
    ASSERT_TRUE(written.count(e.name)) << e.name;
    EXPECT_EQ(written[e.name], train.raw_bytes(e.name)) << e.name;
    ++compared;
  }
  EXPECT_EQ(compared, 72);
}

TEST(DiscriminatorImport, ParametrizationsNamesLoadLikeLegacyOnes) {
  const io::SafetensorsFile legacy = io::SafetensorsFile::open(data_path(kDir + "discriminator.safetensors"));
  std::vector<io::SafetensorsWriteEntry> renamed;
  for (const io::SafetensorsEntry& e : legacy.entries()) {
    std::string name = e.name;
    const std::string base = name.substr(0, name.size() - 9);
    if (name.size() > 9 && name.compare(name.size() - 9, 9, ".weight_g") == 0)
      name = base + ".parametrizations.weight.original0";
    else if (name.size() > 9 && name.compare(name.size() - 9, 9, ".weight_v") == 0)
      name = base + ".parametrizations.weight.original1";
    renamed.push_back({name, e.dtype, e.shape, legacy.raw_bytes(e.name)});
  }
  const std::string path = testing::temp_dir("disc_parametrizations") + "/d.safetensors";
  io::write_safetensors(path, renamed, {});
  const io::VitsConfig config = golden_config(io::SafetensorsFile::open(data_path(kDir + "cases.safetensors")));
  model::Discriminator a(config), b(config);
  EXPECT_EQ(model::import_discriminator(legacy, a).layout, model::DiscriminatorLayout::Legacy);
  EXPECT_EQ(model::import_discriminator(io::SafetensorsFile::open(path), b).layout,
            model::DiscriminatorLayout::Parametrizations);
  EXPECT_EQ(a.params().flat().to_float_vector(), b.params().flat().to_float_vector());
  // And written back under the same names, with the same bytes.
  std::map<std::string, std::vector<uint8_t>> back;
  for (const io::SafetensorsWriteEntry& e :
       model::discriminator_entries(b, model::DiscriminatorLayout::Parametrizations, {}))
    back[e.name] = e.bytes;
  ASSERT_EQ(back.size(), renamed.size());
  for (const io::SafetensorsWriteEntry& e : renamed) {
    ASSERT_TRUE(back.count(e.name)) << e.name;
    EXPECT_EQ(back[e.name], e.bytes) << e.name;
  }
}

TEST(DiscriminatorImport, ShapesThatDoNotMatchTheConfigAreNamed) {
  const io::SafetensorsFile legacy = io::SafetensorsFile::open(data_path(kDir + "discriminator.safetensors"));
  io::VitsConfig config = golden_config(io::SafetensorsFile::open(data_path(kDir + "cases.safetensors")));
  config.discriminator_period_channels = {1, 4, 8, 16, 32};
  model::Discriminator disc(config);
  const std::string e = error_of([&] { model::import_discriminator(legacy, disc); });
  EXPECT_NE(e.find("discriminator.discriminators.1.convs.3.weight_v: file [16, 16, 5, 1] vs config [32, 16, 5, 1]"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("discriminator.safetensors"), std::string::npos) << e;
  // A missing tensor is named too (here: the config has one period more than the file).
  config = golden_config(io::SafetensorsFile::open(data_path(kDir + "cases.safetensors")));
  config.discriminator_periods.push_back(13);
  model::Discriminator more(config);
  const std::string m = error_of([&] { model::import_discriminator(legacy, more); });
  EXPECT_NE(m.find("missing: discriminator.discriminators.6.convs.0.weight_g"), std::string::npos) << m;
}

}  // namespace
}  // namespace vitscuda
