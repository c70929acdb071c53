#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "common/error.h"
#include "io/hf_config.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {

using nlohmann::json;
using vitscuda::testing::data_path;
using vitscuda::testing::temp_dir;

using vitscuda::testing::error_of;

TEST(HfConfig, EmptyObjectGivesTransformersDefaults) {
  // transformers.VitsConfig() defaults (configuration_vits.py), which are facebook/mms-tts-eng's values.
  const VitsConfig c = VitsConfig::from_json(json::object(), "config.json");
  EXPECT_EQ(c.vocab_size, 38);
  EXPECT_EQ(c.hidden_size, 192);
  EXPECT_EQ(c.num_hidden_layers, 6);
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.window_size, 4);
  EXPECT_EQ(c.ffn_dim, 768);
  EXPECT_EQ(c.flow_size, 192);
  EXPECT_EQ(c.spectrogram_bins, 513);
  EXPECT_EQ(c.hidden_act, "relu");
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-5);
  EXPECT_TRUE(c.use_stochastic_duration_prediction);
  EXPECT_EQ(c.upsample_rates, (std::vector<int>{8, 8, 2, 2}));
  EXPECT_EQ(c.upsample_kernel_sizes, (std::vector<int>{16, 16, 4, 4}));
  EXPECT_EQ(c.resblock_dilation_sizes, (std::vector<std::vector<int>>{{1, 3, 5}, {1, 3, 5}, {1, 3, 5}}));
  EXPECT_EQ(c.duration_predictor_flow_bins, 10);
  EXPECT_EQ(c.posterior_encoder_num_wavenet_layers, 16);
  EXPECT_DOUBLE_EQ(c.noise_scale, 0.667);
  EXPECT_DOUBLE_EQ(c.noise_scale_duration, 0.8);
  EXPECT_EQ(c.sampling_rate, 16000);
  EXPECT_EQ(c.pad_token_id, -1);  // transformers' default: no padding index
  EXPECT_EQ(c.total_upsample(), 256);
  EXPECT_EQ(c.to_json(), VitsConfig().to_json());
}

// tests/data/io/vits_config_transformers.json was written by transformers 4.57 with
//   VitsConfig(vocab_size=50, hidden_size=96, num_hidden_layers=3, num_attention_heads=4, window_size=2,
//     use_bias=False, ffn_dim=320, layerdrop=0.05, ffn_kernel_size=4, flow_size=64, spectrogram_bins=257,
//     hidden_act="gelu", hidden_dropout=0.2, attention_dropout=0.15, activation_dropout=0.05,
//     initializer_range=0.03, layer_norm_eps=1e-6, use_stochastic_duration_prediction=False, num_speakers=4,
//     speaker_embedding_size=16, upsample_initial_channel=256, upsample_rates=[8, 5, 4, 2],
//     upsample_kernel_sizes=[16, 11, 8, 4], resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 2], [1, 3, 9]],
//     leaky_relu_slope=0.2, depth_separable_num_layers=2, duration_predictor_flow_bins=8,
//     duration_predictor_tail_bound=4.0, duration_predictor_kernel_size=5, duration_predictor_dropout=0.3,
//     duration_predictor_num_flows=3, duration_predictor_filter_channels=128, prior_encoder_num_flows=2,
//     prior_encoder_num_wavenet_layers=3, posterior_encoder_num_wavenet_layers=8, wavenet_kernel_size=3,
//     wavenet_dilation_rate=2, wavenet_dropout=0.1, speaking_rate=1.25, noise_scale=0.5, noise_scale_duration=0.6,
//     sampling_rate=22050, pad_token_id=3, architectures=["VitsModel"], torch_dtype="float32"
//   ).to_json_file("vits_config_transformers.json", use_diff=False)
// so it also carries the many generic PretrainedConfig keys, which must be ignored.
TEST(HfConfig, ReadsEveryFieldOfConfigWrittenByTransformers) {
  const VitsConfig c = VitsConfig::from_file(data_path("io/vits_config_transformers.json"));
  EXPECT_EQ(c.vocab_size, 50);
  EXPECT_EQ(c.hidden_size, 96);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.window_size, 2);
  EXPECT_FALSE(c.use_bias);
  EXPECT_EQ(c.ffn_dim, 320);
  EXPECT_DOUBLE_EQ(c.layerdrop, 0.05);
  EXPECT_EQ(c.ffn_kernel_size, 4);
  EXPECT_EQ(c.flow_size, 64);
  EXPECT_EQ(c.spectrogram_bins, 257);
  EXPECT_EQ(c.hidden_act, "gelu");
  EXPECT_DOUBLE_EQ(c.hidden_dropout, 0.2);
  EXPECT_DOUBLE_EQ(c.attention_dropout, 0.15);
  EXPECT_DOUBLE_EQ(c.activation_dropout, 0.05);
  EXPECT_DOUBLE_EQ(c.initializer_range, 0.03);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-6);
  EXPECT_FALSE(c.use_stochastic_duration_prediction);
  EXPECT_EQ(c.num_speakers, 4);
  EXPECT_EQ(c.speaker_embedding_size, 16);
  EXPECT_EQ(c.upsample_initial_channel, 256);
  EXPECT_EQ(c.upsample_rates, (std::vector<int>{8, 5, 4, 2}));
  EXPECT_EQ(c.upsample_kernel_sizes, (std::vector<int>{16, 11, 8, 4}));
  EXPECT_EQ(c.resblock_kernel_sizes, (std::vector<int>{3, 5}));
  EXPECT_EQ(c.resblock_dilation_sizes, (std::vector<std::vector<int>>{{1, 2}, {1, 3, 9}}));
  EXPECT_DOUBLE_EQ(c.leaky_relu_slope, 0.2);
  EXPECT_EQ(c.depth_separable_channels, 2);
  EXPECT_EQ(c.depth_separable_num_layers, 2);
  EXPECT_EQ(c.duration_predictor_flow_bins, 8);
  EXPECT_DOUBLE_EQ(c.duration_predictor_tail_bound, 4.0);
  EXPECT_EQ(c.duration_predictor_kernel_size, 5);
  EXPECT_DOUBLE_EQ(c.duration_predictor_dropout, 0.3);
  EXPECT_EQ(c.duration_predictor_num_flows, 3);
  EXPECT_EQ(c.duration_predictor_filter_channels, 128);
  EXPECT_EQ(c.prior_encoder_num_flows, 2);
  EXPECT_EQ(c.prior_encoder_num_wavenet_layers, 3);
  EXPECT_EQ(c.posterior_encoder_num_wavenet_layers, 8);
  EXPECT_EQ(c.wavenet_kernel_size, 3);
  EXPECT_EQ(c.wavenet_dilation_rate, 2);
  EXPECT_DOUBLE_EQ(c.wavenet_dropout, 0.1);
  EXPECT_DOUBLE_EQ(c.speaking_rate, 1.25);
  EXPECT_DOUBLE_EQ(c.noise_scale, 0.5);
  EXPECT_DOUBLE_EQ(c.noise_scale_duration, 0.6);
  EXPECT_EQ(c.sampling_rate, 22050);
  EXPECT_EQ(c.pad_token_id, 3);
  EXPECT_EQ(c.total_upsample(), 320);
}

TEST(HfConfig, ToJsonRoundTrips) {
  VitsConfig c = VitsConfig::from_file(data_path("io/vits_config_transformers.json"));
  const json j = c.to_json();
  EXPECT_EQ(j.at("model_type"), "vits");
  EXPECT_EQ(j.at("architectures"), json::array({"VitsModel"}));
  EXPECT_EQ(j.at("resblock_dilation_sizes"), json::parse("[[1, 2], [1, 3, 9]]"));
  const VitsConfig back = VitsConfig::from_json(j, "roundtrip");
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.hidden_act, "gelu");
  EXPECT_EQ(back.resblock_dilation_sizes, c.resblock_dilation_sizes);
  EXPECT_DOUBLE_EQ(back.layer_norm_eps, 1e-6);
  EXPECT_EQ(back.pad_token_id, 3);

  // Through a file as well.
  const std::string path = temp_dir("hf_config_roundtrip") + "/config.json";
  std::ofstream(path) << j.dump(2);
  EXPECT_EQ(VitsConfig::from_file(path).to_json(), j);
}

TEST(HfConfig, AbsentOrNullPadTokenIdIsZero) {
  EXPECT_EQ(VitsConfig::from_json(json::parse(R"({"pad_token_id": null})"), "c").pad_token_id, -1);
  EXPECT_EQ(VitsConfig::from_json(json::parse(R"({"pad_token_id": 5})"), "c").pad_token_id, 5);
}

struct InvalidCase {
  const char* field;
  const char* value;  // JSON
};

TEST(HfConfig, InvalidValuesNameTheField) {
  const std::vector<InvalidCase> cases = {
      {"vocab_size", "0"},
      {"hidden_size", "0"},
      {"hidden_size", "-192"},
      {"hidden_size", "191"},  // not divisible by 2 heads
      {"num_attention_heads", "0"},
      {"window_size", "-1"},
      {"ffn_dim", "0"},
      {"ffn_kernel_size", "0"},
      {"flow_size", "191"},
      {"spectrogram_bins", "0"},
      {"hidden_act", "\"mish\""},
      {"layerdrop", "1.5"},
      {"hidden_dropout", "1.0"},
      {"attention_dropout", "-0.1"},
      {"activation_dropout", "2"},
      {"duration_predictor_dropout", "1"},
      {"wavenet_dropout", "-0.5"},
      {"layer_norm_eps", "0"},
      {"num_speakers", "0"},
      {"speaker_embedding_size", "-1"},
      {"upsample_initial_channel", "0"},
      {"upsample_rates", "[8, 8, 2]"},                 // length differs from upsample_kernel_sizes
      {"upsample_rates", "[8, 0, 2, 2]"},
      {"upsample_kernel_sizes", "[16, 16, 4, -4]"},
      {"upsample_kernel_sizes", "[16, 4, 4, 4]"},      // kernel < rate
      {"resblock_dilation_sizes", "[[1, 3, 5], [1, 3, 5]]"},
      {"resblock_dilation_sizes", "[[1, 3, 5], [1, 0, 5], [1, 3, 5]]"},
      {"resblock_kernel_sizes", "[3, 6, 11]"},
      {"depth_separable_channels", "4"},
      {"depth_separable_num_layers", "0"},
      {"duration_predictor_flow_bins", "0"},
      {"duration_predictor_tail_bound", "0"},
      {"duration_predictor_kernel_size", "4"},
      {"duration_predictor_num_flows", "0"},
      {"duration_predictor_filter_channels", "0"},
      {"prior_encoder_num_flows", "0"},
      {"prior_encoder_num_wavenet_layers", "0"},
      {"posterior_encoder_num_wavenet_layers", "0"},
      {"wavenet_kernel_size", "4"},
      {"wavenet_dilation_rate", "0"},
      {"speaking_rate", "0"},
      {"noise_scale", "-0.1"},
      {"noise_scale_duration", "-1"},
      {"sampling_rate", "0"},
      {"pad_token_id", "38"},  // outside the 38-entry vocabulary
      {"pad_token_id", "-2"},
  };
  for (const InvalidCase& c : cases) {
    json j = json::object();
    j[c.field] = json::parse(c.value);
    const std::string msg = error_of([&] { VitsConfig::from_json(j, "config.json"); });
    EXPECT_NE(msg.find(std::string("'") + c.field + "'"), std::string::npos)
        << c.field << " = " << c.value << " gave: \"" << msg << "\"";
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
}

TEST(HfConfig, MultiSpeakerNeedsSpeakerEmbedding) {
  const std::string msg = error_of([] { VitsConfig::from_json(json::parse(R"({"num_speakers": 3})"), "config.json"); });
  EXPECT_NE(msg.find("'speaker_embedding_size'"), std::string::npos) << msg;
  const VitsConfig ok =
      VitsConfig::from_json(json::parse(R"({"num_speakers": 3, "speaker_embedding_size": 8})"), "config.json");
  EXPECT_EQ(ok.num_speakers, 3);
}

TEST(HfConfig, ValidateRejectsInvalidStruct) {
  VitsConfig c;
  c.validate("x");
  c.upsample_kernel_sizes.pop_back();
  const std::string msg = error_of([&] { c.validate("my.json"); });
  EXPECT_NE(msg.find("'upsample_kernel_sizes'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("my.json"), std::string::npos) << msg;
}

TEST(HfConfig, WrongTypesNameTheField) {
  struct TypeCase {
    const char* json_text;
    const char* expected;
  };
  const std::vector<TypeCase> cases = {
      {R"({"hidden_size": "192"})", "config.json: field 'hidden_size' must be an integer, got string"},
      {R"({"hidden_size": 192.5})", "field 'hidden_size' must be an integer, got float"},
      {R"({"use_bias": 1})", "field 'use_bias' must be a boolean, got integer"},
      {R"({"layerdrop": "0.1"})", "field 'layerdrop' must be a number, got string"},
      {R"({"hidden_act": 3})", "field 'hidden_act' must be a string, got integer"},
      {R"({"upsample_rates": 8})", "field 'upsample_rates' must be an array of integers, got integer"},
      {R"({"upsample_rates": [8, "8", 2, 2]})", "field 'upsample_rates[1]' must be an integer, got string"},
      {R"({"resblock_dilation_sizes": [[1, 3, 5], 3, [1, 3, 5]]})", "field 'resblock_dilation_sizes[1]'"},
      {R"({"sampling_rate": 99999999999})", "field 'sampling_rate'"},
      {R"({"model_type": "bert"})", "field 'model_type' must be \"vits\""},
  };
  for (const TypeCase& c : cases) {
    const std::string msg = error_of([&] { VitsConfig::from_json(json::parse(c.json_text), "config.json"); });
    EXPECT_NE(msg.find(c.expected), std::string::npos) << c.json_text << " gave: \"" << msg << "\"";
  }
  EXPECT_NE(error_of([] { VitsConfig::from_json(json::array(), "config.json"); }).find("JSON object"),
            std::string::npos);
}

TEST(HfConfig, FileErrorsNameThePath) {
  const std::string dir = temp_dir("hf_config_files");
  EXPECT_NE(error_of([&] { VitsConfig::from_file(dir + "/missing.json"); }).find(dir + "/missing.json"),
            std::string::npos);
  std::ofstream(dir + "/broken.json") << "{\"hidden_size\": 192,";
  const std::string msg = error_of([&] { VitsConfig::from_file(dir + "/broken.json"); });
  EXPECT_NE(msg.find(dir + "/broken.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
}

}  // namespace
}  // namespace vitscuda::io
