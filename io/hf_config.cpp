#include "io/hf_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "common/error.h"
#include "io/json_input.h"

namespace vitscuda::io {

namespace {

using nlohmann::json;

std::string json_kind(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "float";
  return v.type_name();  // "string", "boolean", "array", "object", "null"
}

class FieldReader {
 public:
  FieldReader(const json& j, const std::string& source) : j_(j), source_(source) {}

  void read(const char* key, int& out) const {
    if (const json* v = find(key)) out = as_int(*v, key);
  }
  void read(const char* key, double& out) const {
    if (const json* v = find(key)) {
      VC_CHECK(v->is_number(), source_ << ": field '" << key << "' must be a number, got " << json_kind(*v));
      out = v->get<double>();
    }
  }
  void read(const char* key, bool& out) const {
    if (const json* v = find(key)) {
      VC_CHECK(v->is_boolean(), source_ << ": field '" << key << "' must be a boolean, got " << json_kind(*v));
      out = v->get<bool>();
    }
  }
  void read(const char* key, std::string& out) const {
    if (const json* v = find(key)) {
      VC_CHECK(v->is_string(), source_ << ": field '" << key << "' must be a string, got " << json_kind(*v));
      out = v->get<std::string>();
    }
  }
  void read(const char* key, std::vector<int>& out) const {
    if (const json* v = find(key)) out = as_int_list(*v, key);
  }
  void read(const char* key, std::vector<std::vector<int>>& out) const {
    if (const json* v = find(key)) {
      VC_CHECK(v->is_array(), source_ << ": field '" << key << "' must be an array of integer arrays, got "
                                      << json_kind(*v));
      std::vector<std::vector<int>> lists;
      for (size_t i = 0; i < v->size(); ++i)
        lists.push_back(as_int_list((*v)[i], std::string(key) + "[" + std::to_string(i) + "]"));
      out = std::move(lists);
    }
  }

 private:
  const json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  int as_int(const json& v, const std::string& key) const {
    VC_CHECK(v.is_number_integer(), source_ << ": field '" << key << "' must be an integer, got " << json_kind(v)
                                            << (v.is_number_float() ? " " + v.dump() : std::string()));
    const bool fits = v.is_number_unsigned()
                          ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int>::max())
                          : (v.get<int64_t>() >= std::numeric_limits<int>::min() &&
                             v.get<int64_t>() <= std::numeric_limits<int>::max());
    VC_CHECK(fits, source_ << ": field '" << key << "' = " << v.dump() << " does not fit in a 32-bit integer");
    return static_cast<int>(v.get<int64_t>());
  }
  std::vector<int> as_int_list(const json& v, const std::string& key) const {
    VC_CHECK(v.is_array(), source_ << ": field '" << key << "' must be an array of integers, got " << json_kind(v));
    std::vector<int> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(as_int(v[i], key + "[" + std::to_string(i) + "]"));
    return out;
  }

  const json& j_;
  const std::string& source_;
};

template <typename T> std::string list_str(const std::vector<T>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

}  // namespace

VitsConfig VitsConfig::from_json(const json& j, const std::string& source) {
  VC_CHECK(j.is_object(), source << ": config must be a JSON object, got " << json_kind(j));
  if (j.contains("model_type")) {
    const json& mt = j["model_type"];
    VC_CHECK(mt.is_string() && mt.get<std::string>() == "vits",
             source << ": field 'model_type' must be \"vits\", got " << mt.dump());
  }
  VitsConfig c;
  FieldReader r(j, source);
  r.read("vocab_size", c.vocab_size);
  r.read("hidden_size", c.hidden_size);
  r.read("num_hidden_layers", c.num_hidden_layers);
  r.read("num_attention_heads", c.num_attention_heads);
  r.read("window_size", c.window_size);
  r.read("use_bias", c.use_bias);
  r.read("ffn_dim", c.ffn_dim);
  r.read("layerdrop", c.layerdrop);
  r.read("ffn_kernel_size", c.ffn_kernel_size);
  r.read("flow_size", c.flow_size);
  r.read("spectrogram_bins", c.spectrogram_bins);
  r.read("hidden_act", c.hidden_act);
  r.read("hidden_dropout", c.hidden_dropout);
  r.read("attention_dropout", c.attention_dropout);
  r.read("activation_dropout", c.activation_dropout);
  r.read("initializer_range", c.initializer_range);
  r.read("layer_norm_eps", c.layer_norm_eps);
  r.read("use_stochastic_duration_prediction", c.use_stochastic_duration_prediction);
  r.read("num_speakers", c.num_speakers);
  r.read("speaker_embedding_size", c.speaker_embedding_size);
  r.read("upsample_initial_channel", c.upsample_initial_channel);
  r.read("upsample_rates", c.upsample_rates);
  r.read("upsample_kernel_sizes", c.upsample_kernel_sizes);
  r.read("resblock_kernel_sizes", c.resblock_kernel_sizes);
  r.read("resblock_dilation_sizes", c.resblock_dilation_sizes);
  r.read("leaky_relu_slope", c.leaky_relu_slope);
  r.read("depth_separable_channels", c.depth_separable_channels);
  r.read("depth_separable_num_layers", c.depth_separable_num_layers);
  r.read("duration_predictor_flow_bins", c.duration_predictor_flow_bins);
  r.read("duration_predictor_tail_bound", c.duration_predictor_tail_bound);
  r.read("duration_predictor_kernel_size", c.duration_predictor_kernel_size);
  r.read("duration_predictor_dropout", c.duration_predictor_dropout);
  r.read("duration_predictor_num_flows", c.duration_predictor_num_flows);
  r.read("duration_predictor_filter_channels", c.duration_predictor_filter_channels);
  r.read("prior_encoder_num_flows", c.prior_encoder_num_flows);
  r.read("prior_encoder_num_wavenet_layers", c.prior_encoder_num_wavenet_layers);
  r.read("posterior_encoder_num_wavenet_layers", c.posterior_encoder_num_wavenet_layers);
  r.read("wavenet_kernel_size", c.wavenet_kernel_size);
  r.read("wavenet_dilation_rate", c.wavenet_dilation_rate);
  r.read("wavenet_dropout", c.wavenet_dropout);
  r.read("speaking_rate", c.speaking_rate);
  r.read("noise_scale", c.noise_scale);
  r.read("noise_scale_duration", c.noise_scale_duration);
  r.read("sampling_rate", c.sampling_rate);
  // PretrainedConfig writes null when no pad token is set: no padding index, like an absent key.
  if (!(j.contains("pad_token_id") && j["pad_token_id"].is_null())) r.read("pad_token_id", c.pad_token_id);
  for (const char* key : {"discriminator_kernel_size", "discriminator_stride", "discriminator_periods",
                          "discriminator_period_channels", "discriminator_scale_channels"})
    if (j.contains(key)) c.discriminator_fields_present = true;
  r.read("discriminator_kernel_size", c.discriminator_kernel_size);
  r.read("discriminator_stride", c.discriminator_stride);
  r.read("discriminator_periods", c.discriminator_periods);
  r.read("discriminator_period_channels", c.discriminator_period_channels);
  // null: no scale discriminator (finetune-hf-vits' VitsDiscriminator skips it).
  if (j.contains("discriminator_scale_channels") && j["discriminator_scale_channels"].is_null())
    c.discriminator_scale_channels.clear();
  else
    r.read("discriminator_scale_channels", c.discriminator_scale_channels);
  c.validate(source);
  return c;
}

VitsConfig VitsConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  VC_CHECK(in, path << ": cannot open config: " << std::strerror(errno));
  json j;
  try {
    j = parse_json_input<json>(path, in);
  } catch (const json::exception& e) {
    VC_FAIL(path << ": config is not valid JSON: " << e.what());
  }
  return from_json(j, path);
}

void VitsConfig::validate(const std::string& source) const {
  auto positive = [&](const char* field, long long value) {
    VC_CHECK(value > 0, source << ": field '" << field << "' must be > 0, got " << value);
  };
  auto non_negative = [&](const char* field, double value) {
    VC_CHECK(value >= 0, source << ": field '" << field << "' must be >= 0, got " << value);
  };
  auto finite = [&](const char* field, double value) {
    VC_CHECK(std::isfinite(value), source << ": field '" << field << "' must be finite, got " << value);
  };
  auto probability = [&](const char* field, double value) {
    VC_CHECK(value >= 0 && value < 1, source << ": field '" << field << "' must be in [0, 1), got " << value);
  };

  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  non_negative("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  VC_CHECK(hidden_size % num_attention_heads == 0,
           source << ": field 'hidden_size' (" << hidden_size << ") must be divisible by 'num_attention_heads' ("
                  << num_attention_heads << ")");
  non_negative("window_size", window_size);
  positive("ffn_dim", ffn_dim);
  positive("ffn_kernel_size", ffn_kernel_size);
  positive("flow_size", flow_size);
  VC_CHECK(flow_size % 2 == 0,
           source << ": field 'flow_size' must be even (the flow splits it in halves), got " << flow_size);
  positive("spectrogram_bins", spectrogram_bins);
  static const std::set<std::string> activations = {"relu", "gelu", "gelu_new", "silu", "swish", "tanh", "sigmoid"};
  VC_CHECK(activations.count(hidden_act),
           source << ": field 'hidden_act' must be one of relu, gelu, gelu_new, silu, swish, tanh, sigmoid; got \""
                  << hidden_act << "\"");
  VC_CHECK(layerdrop >= 0 && layerdrop <= 1, source << ": field 'layerdrop' must be in [0, 1], got " << layerdrop);
  probability("hidden_dropout", hidden_dropout);
  probability("attention_dropout", attention_dropout);
  probability("activation_dropout", activation_dropout);
  probability("duration_predictor_dropout", duration_predictor_dropout);
  probability("wavenet_dropout", wavenet_dropout);
  finite("initializer_range", initializer_range);
  non_negative("initializer_range", initializer_range);
  finite("layer_norm_eps", layer_norm_eps);
  VC_CHECK(layer_norm_eps > 0, source << ": field 'layer_norm_eps' must be > 0, got " << layer_norm_eps);

  VC_CHECK(num_speakers >= 1, source << ": field 'num_speakers' must be >= 1, got " << num_speakers);
  non_negative("speaker_embedding_size", speaker_embedding_size);
  VC_CHECK(num_speakers == 1 || speaker_embedding_size > 0,
           source << ": field 'speaker_embedding_size' must be > 0 when num_speakers is " << num_speakers << ", got "
                  << speaker_embedding_size);

  positive("upsample_initial_channel", upsample_initial_channel);
  VC_CHECK(!upsample_rates.empty(), source << ": field 'upsample_rates' must not be empty");
  VC_CHECK(upsample_rates.size() == upsample_kernel_sizes.size(),
           source << ": field 'upsample_kernel_sizes' has " << upsample_kernel_sizes.size()
                  << " entries but 'upsample_rates' has " << upsample_rates.size());
  for (size_t i = 0; i < upsample_rates.size(); ++i) {
    VC_CHECK(upsample_rates[i] > 0, source << ": field 'upsample_rates' entries must be > 0, got "
                                           << list_str(upsample_rates));
    VC_CHECK(upsample_kernel_sizes[i] > 0, source << ": field 'upsample_kernel_sizes' entries must be > 0, got "
                                                  << list_str(upsample_kernel_sizes));
    // padding = (kernel - rate) / 2 must not be negative.
    VC_CHECK(upsample_kernel_sizes[i] >= upsample_rates[i],
             source << ": field 'upsample_kernel_sizes'[" << i << "] = " << upsample_kernel_sizes[i]
                    << " must be >= upsample_rates[" << i << "] = " << upsample_rates[i]);
  }
  VC_CHECK(upsample_rates.size() < 31 && (upsample_initial_channel >> upsample_rates.size()) >= 1,
           source << ": field 'upsample_initial_channel' (" << upsample_initial_channel << ") is halved "
                  << upsample_rates.size() << " times and would reach 0 channels");
  int64_t total = 1;
  for (int rate : upsample_rates) {
    total *= rate;
    VC_CHECK(total <= std::numeric_limits<int>::max(),
             source << ": field 'upsample_rates' product overflows: " << list_str(upsample_rates));
  }

  VC_CHECK(!resblock_kernel_sizes.empty(), source << ": field 'resblock_kernel_sizes' must not be empty");
  VC_CHECK(resblock_kernel_sizes.size() == resblock_dilation_sizes.size(),
           source << ": field 'resblock_dilation_sizes' has " << resblock_dilation_sizes.size()
                  << " entries but 'resblock_kernel_sizes' has " << resblock_kernel_sizes.size());
  for (size_t i = 0; i < resblock_kernel_sizes.size(); ++i) {
    // "same" padding (k * d - d) / 2 keeps the length only for odd kernels.
    VC_CHECK(resblock_kernel_sizes[i] > 0 && resblock_kernel_sizes[i] % 2 == 1,
             source << ": field 'resblock_kernel_sizes' entries must be positive and odd, got "
                    << list_str(resblock_kernel_sizes));
    VC_CHECK(!resblock_dilation_sizes[i].empty(),
             source << ": field 'resblock_dilation_sizes'[" << i << "] must not be empty");
    for (int d : resblock_dilation_sizes[i])
      VC_CHECK(d > 0, source << ": field 'resblock_dilation_sizes'[" << i << "] entries must be > 0, got "
                             << list_str(resblock_dilation_sizes[i]));
  }
  finite("leaky_relu_slope", leaky_relu_slope);

  VC_CHECK(depth_separable_channels == 2,
           source << ": field 'depth_separable_channels' must be 2 (the duration flows split it into two halves "
                  << "of one channel), got " << depth_separable_channels);
  positive("depth_separable_num_layers", depth_separable_num_layers);
  VC_CHECK(duration_predictor_flow_bins >= 1,
           source << ": field 'duration_predictor_flow_bins' must be >= 1, got " << duration_predictor_flow_bins);
  finite("duration_predictor_tail_bound", duration_predictor_tail_bound);
  VC_CHECK(duration_predictor_tail_bound > 0, source << ": field 'duration_predictor_tail_bound' must be > 0, got "
                                                     << duration_predictor_tail_bound);
  VC_CHECK(duration_predictor_kernel_size > 0 && duration_predictor_kernel_size % 2 == 1,
           source << ": field 'duration_predictor_kernel_size' must be positive and odd (padding kernel // 2), got "
                  << duration_predictor_kernel_size);
  positive("duration_predictor_num_flows", duration_predictor_num_flows);
  positive("duration_predictor_filter_channels", duration_predictor_filter_channels);
  positive("prior_encoder_num_flows", prior_encoder_num_flows);
  positive("prior_encoder_num_wavenet_layers", prior_encoder_num_wavenet_layers);
  positive("posterior_encoder_num_wavenet_layers", posterior_encoder_num_wavenet_layers);
  VC_CHECK(wavenet_kernel_size > 0 && wavenet_kernel_size % 2 == 1,
           source << ": field 'wavenet_kernel_size' must be positive and odd (symmetric padding), got "
                  << wavenet_kernel_size);
  positive("wavenet_dilation_rate", wavenet_dilation_rate);

  finite("speaking_rate", speaking_rate);
  VC_CHECK(speaking_rate > 0, source << ": field 'speaking_rate' must be > 0, got " << speaking_rate);
  finite("noise_scale", noise_scale);
  non_negative("noise_scale", noise_scale);
  finite("noise_scale_duration", noise_scale_duration);
  non_negative("noise_scale_duration", noise_scale_duration);
  positive("sampling_rate", sampling_rate);
  positive("discriminator_kernel_size", discriminator_kernel_size);
  positive("discriminator_stride", discriminator_stride);
  VC_CHECK(!discriminator_periods.empty(), source << ": field 'discriminator_periods' must not be empty");
  for (int p : discriminator_periods)
    VC_CHECK(p >= 1, source << ": field 'discriminator_periods' entries must be >= 1, got "
                            << list_str(discriminator_periods));
  auto channel_list = [&](const char* field, const std::vector<int>& channels) {
    VC_CHECK(channels.size() >= 2 && channels[0] == 1,
             source << ": field '" << field << "' must list >= 2 channel counts starting with 1 (the waveform), got "
                    << list_str(channels));
    for (int ch : channels)
      VC_CHECK(ch > 0, source << ": field '" << field << "' entries must be > 0, got " << list_str(channels));
  };
  channel_list("discriminator_period_channels", discriminator_period_channels);
  if (!discriminator_scale_channels.empty()) {
    channel_list("discriminator_scale_channels", discriminator_scale_channels);
    VC_CHECK(discriminator_scale_channels.size() <= 12,
             source << ": field 'discriminator_scale_channels' has " << discriminator_scale_channels.size()
                    << " entries; its group counts (4^i) would overflow");
    const size_t n = discriminator_scale_channels.size();
    for (size_t i = 1; i < n; ++i) {
      const int groups = discriminator_scale_groups(static_cast<int>(i));
      const int cin = discriminator_scale_channels[i], cout = i + 1 < n ? discriminator_scale_channels[i + 1] : cin;
      VC_CHECK(cin % groups == 0 && cout % groups == 0,
               source << ": field 'discriminator_scale_channels' " << list_str(discriminator_scale_channels)
                      << ": the scale discriminator's conv " << i << " (" << cin << " -> " << cout << " channels) has "
                      << groups << " groups, which must divide both channel counts");
    }
  }
  VC_CHECK(pad_token_id >= -1 && pad_token_id < vocab_size,
           source << ": field 'pad_token_id' must be null or in [0, vocab_size = " << vocab_size << "), got "
                  << pad_token_id);
}

json VitsConfig::to_json(bool with_discriminator) const {
  json j;
  j["architectures"] = json::array({"VitsModel"});
  j["model_type"] = "vits";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["window_size"] = window_size;
  j["use_bias"] = use_bias;
  j["ffn_dim"] = ffn_dim;
  j["layerdrop"] = layerdrop;
  j["ffn_kernel_size"] = ffn_kernel_size;
  j["flow_size"] = flow_size;
  j["spectrogram_bins"] = spectrogram_bins;
  j["hidden_act"] = hidden_act;
  j["hidden_dropout"] = hidden_dropout;
  j["attention_dropout"] = attention_dropout;
  j["activation_dropout"] = activation_dropout;
  j["initializer_range"] = initializer_range;
  j["layer_norm_eps"] = layer_norm_eps;
  j["use_stochastic_duration_prediction"] = use_stochastic_duration_prediction;
  j["num_speakers"] = num_speakers;
  j["speaker_embedding_size"] = speaker_embedding_size;
  j["upsample_initial_channel"] = upsample_initial_channel;
  j["upsample_rates"] = upsample_rates;
  j["upsample_kernel_sizes"] = upsample_kernel_sizes;
  j["resblock_kernel_sizes"] = resblock_kernel_sizes;
  j["resblock_dilation_sizes"] = resblock_dilation_sizes;
  j["leaky_relu_slope"] = leaky_relu_slope;
  j["depth_separable_channels"] = depth_separable_channels;
  j["depth_separable_num_layers"] = depth_separable_num_layers;
  j["duration_predictor_flow_bins"] = duration_predictor_flow_bins;
  j["duration_predictor_tail_bound"] = duration_predictor_tail_bound;
  j["duration_predictor_kernel_size"] = duration_predictor_kernel_size;
  j["duration_predictor_dropout"] = duration_predictor_dropout;
  j["duration_predictor_num_flows"] = duration_predictor_num_flows;
  j["duration_predictor_filter_channels"] = duration_predictor_filter_channels;
  j["prior_encoder_num_flows"] = prior_encoder_num_flows;
  j["prior_encoder_num_wavenet_layers"] = prior_encoder_num_wavenet_layers;
  j["posterior_encoder_num_wavenet_layers"] = posterior_encoder_num_wavenet_layers;
  j["wavenet_kernel_size"] = wavenet_kernel_size;
  j["wavenet_dilation_rate"] = wavenet_dilation_rate;
  j["wavenet_dropout"] = wavenet_dropout;
  j["speaking_rate"] = speaking_rate;
  j["noise_scale"] = noise_scale;
  j["noise_scale_duration"] = noise_scale_duration;
  j["sampling_rate"] = sampling_rate;
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  else j["pad_token_id"] = nullptr;
  if (with_discriminator || discriminator_fields_present) {
    j["discriminator_kernel_size"] = discriminator_kernel_size;
    j["discriminator_stride"] = discriminator_stride;
    j["discriminator_periods"] = discriminator_periods;
    j["discriminator_period_channels"] = discriminator_period_channels;
    if (discriminator_scale_channels.empty()) j["discriminator_scale_channels"] = nullptr;
    else j["discriminator_scale_channels"] = discriminator_scale_channels;
  }
  return j;
}

int VitsConfig::discriminator_scale_groups(int index) const {
  int groups = 1;
  for (int i = 0; i < index; ++i) groups *= 4;
  return groups;
}

int VitsConfig::total_upsample() const {
  int total = 1;
  for (int rate : upsample_rates) total *= rate;
  return total;
}

}  // namespace vitscuda::io
