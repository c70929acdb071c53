#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "common/error.h"
#include "engine/device_allocator.h"
#include "io/audio.h"
#include "kernels/backend.h"
#include "model/model_dir.h"

namespace vitscuda::cli {

namespace {

struct SynthArgs {
  std::string model_dir, text, out, wav_format = "pcm16";
  DeviceOptions device;
  int speaker = -1;
  uint64_t seed = 0;
  double noise_scale = -1, noise_scale_duration = -1, speaking_rate = -1;  // < 0: the config's value
};

void run_synth(const SynthArgs& a) {
  const Device device = resolve_device(a.device, "synth");
  model::LoadedModel loaded = model::load_model_dir(a.model_dir);
  loaded.model->to(device);
  const io::VitsConfig& c = loaded.model->config();
  io::TokenizerResult tokens = loaded.tokenizer.encode(a.text);
  if (!tokens.dropped.empty()) {
    std::string list;
    for (const auto& ch : tokens.dropped) list += (list.empty() ? "'" : ", '") + ch + "'";
    std::fprintf(stderr, "warning: %zu character(s) not in the vocabulary were dropped: %s\n", tokens.dropped.size(),
                 list.c_str());
  }
  model::SynthesisOptions opt;
  opt.noise_scale = a.noise_scale >= 0 ? a.noise_scale : c.noise_scale;
  opt.noise_scale_duration = a.noise_scale_duration >= 0 ? a.noise_scale_duration : c.noise_scale_duration;
  opt.speaking_rate = a.speaking_rate > 0 ? a.speaking_rate : c.speaking_rate;
  opt.speaker_id = a.speaker;
  opt.seed = a.seed;
  const auto t0 = std::chrono::steady_clock::now();
  model::SynthesisOutput out = loaded.model->synthesize({tokens.ids}, opt);
  std::vector<float> wave = out.waveform.to_float_vector();  // waits for the device
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  wave.resize(static_cast<size_t>(out.sample_lengths[0]));
  io::write_wav(a.out, wave, c.sampling_rate, a.wav_format == "float" ? io::WavFormat::Float32 : io::WavFormat::Pcm16);
  const double audio_seconds = static_cast<double>(wave.size()) / c.sampling_rate;
  std::printf("wrote %s: %.2f s of audio at %d Hz (%zu tokens, %lld frames)\n", a.out.c_str(), audio_seconds,
              c.sampling_rate, tokens.ids.size(), static_cast<long long>(out.frame_lengths[0]));
  std::printf("synthesis on %s: %.3f s, real-time factor %.3f (synthesis time / audio time)\n", device_name(device),
              seconds, seconds / audio_seconds);
  if (device == Device::CUDA)
    std::printf("peak device memory %s\n", format_bytes(DeviceAllocator::instance().stats().peak_live_bytes).c_str());
}

}  // namespace

void register_synth(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand("synth", "Synthesise text to a WAV file");
  cmd->add_option("--model", args->model_dir, "Model directory (HF VitsModel format)")->required();
  cmd->add_option("--text", args->text, "Text to speak")->required();
  cmd->add_option("--out", args->out, "Output WAV path")->required();
  cmd->add_option("--speaker", args->speaker, "Speaker id (multi-speaker models)");
  cmd->add_option("--seed", args->seed, "Seed for every random draw (default 0)");
  cmd->add_option("--noise-scale", args->noise_scale, "Prior noise scale (default: the config's)");
  cmd->add_option("--noise-scale-duration", args->noise_scale_duration, "Duration noise scale (default: the config's)");
  cmd->add_option("--speaking-rate", args->speaking_rate, "Speaking rate (default: the config's)");
  cmd->add_option("--wav-format", args->wav_format, "pcm16 or float")->check(CLI::IsMember({"pcm16", "float"}));
  add_device_options(cmd, args->device);
  cmd->callback([args] { run_synth(*args); });
}

}  // namespace vitscuda::cli
