// The parameter set we declare must be exactly transformers' state dict for the
// facebook/mms-tts-eng architecture (names with legacy weight_g/weight_v, shapes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "model/vits.h"
#include "support/test_support.h"

using namespace vitscuda;

TEST(Architecture, MmsTtsEngNamesAndShapesMatchTransformers) {
  io::VitsConfig config = io::VitsConfig::from_file(vitscuda::testing::data_path("mms_tts_eng/config.json"));
  ParameterStore store;
  model::declare_vits(config, store);

  std::ifstream in(vitscuda::testing::data_path("mms_tts_eng/state_dict.txt"));
  ASSERT_TRUE(in) << "tests/data/mms_tts_eng/state_dict.txt missing";
  std::vector<std::pair<std::string, std::string>> expected;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    expected.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  std::vector<std::pair<std::string, std::string>> ours;
  for (const ParameterInfo& p : store.params()) {
    std::string dims;
    for (int64_t d : p.shape) dims += (dims.empty() ? "" : ",") + std::to_string(d);
    ours.emplace_back(p.name, dims);
  }
  std::sort(ours.begin(), ours.end());
  std::sort(expected.begin(), expected.end());
  std::vector<std::pair<std::string, std::string>> only_ours, only_expected;
  std::set_difference(ours.begin(), ours.end(), expected.begin(), expected.end(), std::back_inserter(only_ours));
  std::set_difference(expected.begin(), expected.end(), ours.begin(), ours.end(), std::back_inserter(only_expected));
  for (const auto& [n, s] : only_ours) ADD_FAILURE() << "declared but not in transformers: " << n << " [" << s << "]";
  for (const auto& [n, s] : only_expected) ADD_FAILURE() << "in transformers but not declared: " << n << " [" << s << "]";
  EXPECT_EQ(ours.size(), expected.size());
}

// A randomly initialised model must be trainable from its first step: its waveform inside tanh's working range,
// since a saturated output (|w| near 1) passes almost no gradient to the decoder. transformers' kaiming init of
// HiFi-GAN's upsamplers and residual blocks saturates it (the demo model wrote a constant -1.0); VITS' own
// N(0, 0.01) does not. Checked on the demo model and on the full-size mms-tts-eng shapes.
TEST(Architecture, RandomlyInitialisedWaveformIsNotSaturated) {
  for (const std::string path : {vitscuda::testing::source_dir() + "/scripts/demo_model/config.json",
                                 vitscuda::testing::data_path("mms_tts_eng/config.json")}) {
    SCOPED_TRACE(path);
    model::VitsModel vits(io::VitsConfig::from_file(path));
    vits.initialize(1);
    model::SynthesisOptions options;
    options.seed = 1;
    const std::vector<int32_t> ids = {5, 12, 7, 20, 3, 9, 14, 2, 11, 6};
    const std::vector<float> wave = vits.synthesize({ids}, options).waveform.to_float_vector();
    ASSERT_FALSE(wave.empty());
    double peak = 0, sum = 0;
    for (float v : wave) {
      peak = std::max(peak, static_cast<double>(std::fabs(v)));
      sum += v;
    }
    EXPECT_LT(peak, 0.9) << "a randomly initialised decoder's output reaches tanh's saturation";
    EXPECT_LT(std::fabs(sum / static_cast<double>(wave.size())), 0.5) << "mean of the waveform";
  }
}

// Each layer kind starts with the spread a transformers model ends its initialisation with: kaiming normal on plain
// convs; torch's default U(+-1/sqrt(fan_in)) (std 1/sqrt(3 fan_in)) on weight-normed ones, whose kaiming init
// transformers writes into a weight that weight norm recomputes from g and v; and N(0, 0.01) on HiFi-GAN's
// residual blocks. The kinds differ by factors of 2.4 and more; 10% is several times the sampling error of
// a standard deviation over these tensors' thousands of elements.
TEST(Architecture, RandomInitSpreadOfEachLayerKindMatchesTransformers) {
  const io::VitsConfig config =
      io::VitsConfig::from_file(vitscuda::testing::source_dir() + "/scripts/demo_model/config.json");
  model::VitsModel vits(config);
  vits.initialize(1);
  auto spread = [&](const std::string& name) {
    const std::vector<float> w = vits.params().get(name).to_float_vector();
    double sum = 0, squares = 0;
    for (float v : w) {
      sum += v;
      squares += static_cast<double>(v) * v;
    }
    const double n = static_cast<double>(w.size());
    return std::sqrt(squares / n - (sum / n) * (sum / n));
  };
  const double H = config.hidden_size, k = config.wavenet_kernel_size;
  const struct {
    std::string name;
    double expected;
  } cases[] = {
      {"flow.flows.0.wavenet.in_layers.0.weight_v", 1.0 / std::sqrt(3.0 * H * k)},
      {"posterior_encoder.wavenet.in_layers.1.weight_v", 1.0 / std::sqrt(3.0 * H * k)},
      {"posterior_encoder.conv_proj.weight", std::sqrt(2.0 / H)},
      {"decoder.resblocks.0.convs1.0.weight", 0.01},
  };
  for (const auto& c : cases) EXPECT_NEAR(spread(c.name), c.expected, 0.1 * c.expected) << c.name;
}
