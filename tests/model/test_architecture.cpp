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
