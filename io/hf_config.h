// VitsConfig: every field of transformers' VitsConfig, read from an HF
// config.json and validated (an invalid value is rejected with its field named).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vitscuda::io {

struct VitsConfig {
  int vocab_size = 38;
  int hidden_size = 192;
  int num_hidden_layers = 6;
  int num_attention_heads = 2;
  int window_size = 4;  // 0 means no relative-position attention
  bool use_bias = true;
  int ffn_dim = 768;
  double layerdrop = 0.1;
  int ffn_kernel_size = 3;
  int flow_size = 192;
  int spectrogram_bins = 513;
  std::string hidden_act = "relu";  // relu | gelu | gelu_new | silu | swish | tanh ...
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  double activation_dropout = 0.1;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-5;
  bool use_stochastic_duration_prediction = true;
  int num_speakers = 1;
  int speaker_embedding_size = 0;
  int upsample_initial_channel = 512;
  std::vector<int> upsample_rates = {8, 8, 2, 2};
  std::vector<int> upsample_kernel_sizes = {16, 16, 4, 4};
  std::vector<int> resblock_kernel_sizes = {3, 7, 11};
  std::vector<std::vector<int>> resblock_dilation_sizes = {{1, 3, 5}, {1, 3, 5}, {1, 3, 5}};
  double leaky_relu_slope = 0.1;
  int depth_separable_channels = 2;
  int depth_separable_num_layers = 3;
  int duration_predictor_flow_bins = 10;
  double duration_predictor_tail_bound = 5.0;
  int duration_predictor_kernel_size = 3;
  double duration_predictor_dropout = 0.5;
  int duration_predictor_num_flows = 4;
  int duration_predictor_filter_channels = 256;
  int prior_encoder_num_flows = 4;
  int prior_encoder_num_wavenet_layers = 4;
  int posterior_encoder_num_wavenet_layers = 16;
  int wavenet_kernel_size = 5;
  int wavenet_dilation_rate = 1;
  double wavenet_dropout = 0.0;
  double speaking_rate = 1.0;
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  int sampling_rate = 16000;
  // From PretrainedConfig: the embedding's padding_idx (its row starts at zero and gets no gradient,
  // as in torch). -1 when absent or null, as transformers' default None.
  int pad_token_id = -1;
  // The discriminator of finetune-hf-vits' VitsConfig (utils/configuration_vits.py), with its defaults:
  // one scale discriminator on the raw waveform (channel list; empty when the config says null: no scale
  // discriminator) and one period discriminator per period ((kernel, 1) convolutions with stride (stride, 1)).
  // Plain transformers configs have none of these fields.
  int discriminator_kernel_size = 5;
  int discriminator_stride = 3;
  std::vector<int> discriminator_periods = {2, 3, 5, 7, 11};
  std::vector<int> discriminator_period_channels = {1, 32, 128, 512, 1024};
  std::vector<int> discriminator_scale_channels = {1, 16, 64, 256, 1024};
  // Whether config.json named any discriminator field: to_json() writes them back only then (or when
  // asked to), so a plain VitsModel config round-trips unchanged.
  bool discriminator_fields_present = false;

  // Parses and validates; `source` names the file in error messages.
  static VitsConfig from_json(const nlohmann::json& j, const std::string& source);
  static VitsConfig from_file(const std::string& path);
  // Throws vitscuda::Error naming the first invalid field.
  void validate(const std::string& source) const;
  // An HF config.json that transformers' VitsConfig loads (model_type "vits").
  // with_discriminator: also the discriminator fields (they are written anyway when the source had them).
  nlohmann::json to_json(bool with_discriminator = false) const;
  int total_upsample() const;  // product of upsample_rates: waveform samples per frame
  // The scale discriminator's group count of its conv `index` (0-based): 1 for the first, then 4, 16, ...
  // for the channel-changing ones and 4^(n-1) for the one that keeps the last channel count (finetune-hf-vits'
  // VitsHifiGanDiscriminatorScaleResidualBlock). Convs 0 .. scale_channels.size() are grouped; the k5 conv and
  // the final conv after them are not.
  int discriminator_scale_groups(int index) const;
};

}  // namespace vitscuda::io
