#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "model/model_dir.h"

namespace vitscuda::cli {

namespace {

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

void run_info(const std::string& dir) {
  model::LoadedModel loaded = model::load_model_dir(dir);
  const io::VitsConfig& c = loaded.model->config();
  std::printf("model: %s\n", dir.c_str());
  std::printf("  sampling rate %d Hz, vocab %d (tokenizer %zu symbols, add_blank %s), speakers %d\n", c.sampling_rate,
              c.vocab_size, loaded.tokenizer.vocab_size(), loaded.tokenizer.add_blank() ? "yes" : "no", c.num_speakers);
  std::printf("  text front-end: %s\n", loaded.tokenizer.front_end_description().c_str());
  std::printf("  text encoder: hidden %d, %d layers, %d heads, window %d, ffn %d\n", c.hidden_size,
              c.num_hidden_layers, c.num_attention_heads, c.window_size, c.ffn_dim);
  std::printf("  duration predictor: %s\n", c.use_stochastic_duration_prediction ? "stochastic" : "plain");
  std::printf("  flow: %d couplings x %d WaveNet layers, flow size %d\n", c.prior_encoder_num_flows,
              c.prior_encoder_num_wavenet_layers, c.flow_size);
  std::printf("  decoder: %d initial channels, upsample rates %s (hop %d samples)\n", c.upsample_initial_channel,
              join_ints(c.upsample_rates).c_str(), c.total_upsample());
  std::printf("  noise scale %.3f, duration noise scale %.3f, speaking rate %.3f\n", c.noise_scale,
              c.noise_scale_duration, c.speaking_rate);
  std::printf("  weights: %s weight-norm layout\n",
              loaded.import.layout == model::WeightNormLayout::Legacy ? "weight_g/weight_v" : "parametrizations");
  std::printf("parameters:\n");
  for (const auto& [module, count] : loaded.model->params().counts_by_module())
    std::printf("  %-20s %12lld\n", module.c_str(), static_cast<long long>(count));
  std::printf("  %-20s %12lld\n", "total", static_cast<long long>(loaded.model->params().count()));
}

}  // namespace

void register_info(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("info", "Print a model's configuration and parameter counts");
  cmd->add_option("model_dir", *dir, "Model directory")->required();
  cmd->callback([dir] { run_info(*dir); });
}

}  // namespace vitscuda::cli
