// Golden parity: our forward pass against transformers' VitsModel on fixtures made by
// tools/golden/make_golden.py (weights, inputs, captured noise, every intermediate).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "io/safetensors.h"
#include "model/model_dir.h"
#include "support/test_support.h"

using namespace vitscuda;

namespace {

// fp32 throughout on both sides; the longest dependency chain (text encoder -> duration
// predictor -> flow -> decoder) accumulates a few hundred roundings of O(1) values, so 1e-4
// absolute leaves margin while catching any real mismatch (wrong op order, slope, padding: >1e-2).
// The same bound holds on the GPU: its kernels round differently (other summation orders,
// libm within 2 ulp), which adds errors of the same kind and size as the CPU's own.
constexpr double kTolerance = 1e-4;

struct Case {
  std::string fixture;
  std::string io_file;
  Device device = Device::CPU;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.fixture << "/" << c.io_file << " on " << device_name(c.device);
}

class GoldenParity : public ::testing::TestWithParam<Case> {};


TEST_P(GoldenParity, EveryIntermediateMatchesTransformers) {
  const Case& c = GetParam();
  if (c.device == Device::CUDA) {
    VITSCUDA_REQUIRE_CUDA();
  }
  const std::string dir = vitscuda::testing::data_path("golden/" + c.fixture);
  model::LoadedModel loaded = model::load_model_dir(dir);
  loaded.model->to(c.device);
  io::SafetensorsFile io_file = io::SafetensorsFile::open(dir + "/" + c.io_file);
  auto meta = [&](const std::string& key) {
    auto it = io_file.metadata().find(key);
    EXPECT_NE(it, io_file.metadata().end()) << "metadata " << key << " missing in " << c.io_file;
    return it == io_file.metadata().end() ? 0.0 : std::stod(it->second);
  };

  Tensor ids = io_file.load_f32("input_ids");
  Tensor attention = io_file.load_f32("attention_mask");
  const int64_t B = ids.dim(0), T = ids.dim(1);
  std::vector<std::vector<int32_t>> batch(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      if (attention.data<float>()[b * T + t] > 0.5f) batch[b].push_back(static_cast<int32_t>(ids.data<float>()[b * T + t]));

  model::SynthesisOptions opt;
  opt.noise_scale = meta("noise_scale");
  opt.noise_scale_duration = meta("noise_scale_duration");
  opt.speaking_rate = meta("speaking_rate");
  if (io_file.find("speaker_id")) opt.speaker_id = static_cast<int>(io_file.load_f32("speaker_id").data<float>()[0]);
  if (io_file.find("duration_noise")) opt.duration_noise = io_file.load_f32("duration_noise");
  opt.prior_noise = io_file.load_f32("prior_noise");

  model::SynthesisOutput out = loaded.model->synthesize(batch, opt);

  // Durations are integers computed by ceil(): they must agree exactly, or every later tensor has another shape.
  Tensor durations = io_file.load_f32("durations");
  ASSERT_EQ(out.durations.shape(), durations.shape());
  EXPECT_EQ(vitscuda::testing::max_abs_diff(out.durations, durations), 0.0) << "durations differ";

  const std::pair<const char*, Tensor*> checks[] = {
      {"text_hidden", &out.text_hidden},       {"prior_means", &out.prior_means},
      {"prior_log_std", &out.prior_log_std},   {"log_duration", &out.log_duration},
      {"expanded_means", &out.expanded_means}, {"expanded_log_std", &out.expanded_log_std},
      {"prior_latents", &out.prior_latents},   {"spectrogram", &out.spectrogram},
      {"waveform", &out.waveform},
  };
  for (const auto& [name, ours] : checks) {
    Tensor expected = io_file.load_f32(name);
    ASSERT_EQ(ours->shape(), expected.shape()) << name;
    EXPECT_EQ(ours->device(), c.device) << name;
    const double err = vitscuda::testing::max_abs_diff(*ours, expected);
    std::printf("  %-28s %-18s max |diff| %.3g\n", (c.fixture + "/" + c.io_file).c_str(), name, err);
    EXPECT_LT(err, kTolerance) << name << " in " << c.fixture << "/" << c.io_file;
  }
  Tensor lengths = io_file.load_f32("sequence_lengths");
  for (int64_t b = 0; b < B; ++b)
    EXPECT_EQ(out.sample_lengths[b], static_cast<int64_t>(lengths.data<float>()[b])) << "item " << b;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenParity,
                         ::testing::Values(Case{"tiny_sdp", "io_noiseless.safetensors"},
                                           Case{"tiny_sdp", "io_noisy.safetensors"},
                                           Case{"tiny_sdp", "io_single.safetensors"},
                                           Case{"tiny_dp_multispeaker", "io_noiseless.safetensors"},
                                           Case{"tiny_dp_multispeaker", "io_noisy.safetensors"},
                                           Case{"tiny_sdp", "io_noiseless.safetensors", Device::CUDA},
                                           Case{"tiny_sdp", "io_noisy.safetensors", Device::CUDA},
                                           Case{"tiny_sdp", "io_single.safetensors", Device::CUDA},
                                           Case{"tiny_dp_multispeaker", "io_noiseless.safetensors", Device::CUDA},
                                           Case{"tiny_dp_multispeaker", "io_noisy.safetensors", Device::CUDA}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string n = info.param.fixture + "_" + info.param.io_file +
                                           (info.param.device == Device::CUDA ? "_cuda" : "");
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace
