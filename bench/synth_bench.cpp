// bench_synth: synthesis real-time factor (wall time / audio time) of a VITS model on the CPU or
// a CUDA device, for target audio lengths (default 2 s and 10 s).
//
// For each target the sentence is repeated until it has about --tokens-per-second tokens per second
// of audio, then the speaking rate is solved so the output comes out at the target length: the
// predicted log-durations do not depend on the rate (durations = ceil(exp(log_duration) / rate)),
// so one synthesis at rate 1 gives them and the rate is found on the host. bench/reference/
// synth_rtf.py does the same with transformers, so both sides synthesise about the same audio.
// Each timed run is a whole synthesize() call plus the copy of the waveform to the host.
//
// Exit status: 0 done, 1 an error, 2 bad arguments (a malformed --seconds list, a batch or run count below 1),
// 77 --device cuda without a usable device (skipped).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "common/error.h"
#include "engine/device_allocator.h"
#include "engine/tensor.h"
#include "io/hf_config.h"
#include "io/tokenizer.h"
#include "kernels/backend.h"
#include "kernels/device.h"
#include "model/model_dir.h"
#include "model/vits.h"

namespace vitscuda::bench {
namespace {

struct Args {
  std::string model_dir, config_path, tokenizer_dir, device = "cuda", json_path;
  std::string text = "The birch canoe slid on the smooth planks, and the boy glued the sheet to the dark blue background.";
  std::string seconds = "2,10";
  uint64_t seed = 0;
  int batch = 1, warmup = 2, runs = 5;
  double tokens_per_second = 15;
  bool no_calibrate = false;
};

std::vector<double> parse_seconds(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    VC_CHECK(!item.empty() && end && *end == '\0' && v > 0,
             "--seconds: '" << item << "' in '" << text << "' is not a positive number");
    out.push_back(v);
  }
  VC_CHECK(!out.empty(), "--seconds: empty list");
  return out;
}

// Frames of item 0 at a speaking rate, as the model computes them: sum of ceil(exp(ld) / rate).
int64_t frames_at(const std::vector<float>& exp_ld, double rate) {
  const float scale = static_cast<float>(1.0 / rate);
  int64_t total = 0;
  for (float d : exp_ld) total += static_cast<int64_t>(std::ceil(d * scale));
  return std::max<int64_t>(1, total);
}

// The speaking rate that gives the largest length <= target frames (frames fall as the rate rises).
double solve_rate(const std::vector<float>& exp_ld, int64_t target) {
  double lo = std::log(1e-3), hi = std::log(1e3);  // log rate: frames(lo) >= frames(hi)
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (frames_at(exp_ld, std::exp(mid)) > target)
      lo = mid;
    else
      hi = mid;
  }
  return std::exp(hi);
}

struct Result {
  double target_seconds = 0, speaking_rate = 1, audio_seconds = 0;
  int64_t tokens = 0, frames = 0;
  std::vector<double> wall;  // seconds, per timed run
  double median = 0;
  size_t peak_bytes = 0, peak_reserved_bytes = 0;
};

int run(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_synth: synthesis real-time factor of a VITS model"};
  auto* model_opt = app.add_option("--model", a.model_dir, "Model directory (HF VitsModel format)");
  auto* config_opt = app.add_option("--config", a.config_path, "Or: an HF config.json for a randomly initialised model");
  model_opt->excludes(config_opt);
  app.add_option("--tokenizer", a.tokenizer_dir, "With --config: directory with vocab.json (default: the config's)");
  app.add_option("--seed", a.seed, "Seeds the random weights (--config) and every synthesis draw (default 0)");
  app.add_option("--device", a.device, "cuda or cpu (default cuda)")->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--text", a.text, "Sentence to speak (repeated to reach each target length)");
  app.add_option("--seconds", a.seconds, "Target audio lengths in seconds, comma-separated (default 2,10)");
  app.add_option("--batch", a.batch, "Items per synthesize() call, all the same text (default 1)");
  app.add_option("--warmup", a.warmup, "Untimed runs per target (default 2)");
  app.add_option("--runs", a.runs, "Timed runs per target (default 5)");
  app.add_option("--tokens-per-second", a.tokens_per_second, "Text tokens (with blanks) per second of audio (default 15)");
  app.add_flag("--no-calibrate", a.no_calibrate, "Speak --text once at the config's speaking rate (one case)");
  app.add_option("--json", a.json_path, "Write the results as JSON to FILE");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (a.model_dir.empty() && a.config_path.empty()) {
    std::fprintf(stderr, "error: pass --model DIR or --config FILE\n");
    return 2;
  }
  if (a.batch < 1 || a.runs < 1 || a.warmup < 0) {
    std::fprintf(stderr, "error: --batch and --runs must be >= 1 and --warmup >= 0 (got %d, %d, %d)\n", a.batch, a.runs,
                 a.warmup);
    return kExitBadArguments;
  }
  std::vector<double> targets{0.0};
  if (!a.no_calibrate) {
    try {
      targets = parse_seconds(a.seconds);
    } catch (const Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return kExitBadArguments;
    }
  }

  const Device device = a.device == "cuda" ? Device::CUDA : Device::CPU;
  std::string device_name = "cpu";
  if (device == Device::CUDA) {
    std::string why;
    if (!kernels::built_with_cuda() || !kernels::cuda_device_available(&why)) {
      std::printf("bench_synth: skipped: --device cuda but no usable CUDA device (%s)\n", why.c_str());
      return kExitSkipped;
    }
    device_name = kernels::device_info().name;
  }

  // The model and its tokenizer.
  std::unique_ptr<model::VitsModel> vits;
  io::Tokenizer tokenizer;
  std::string source;
  if (!a.model_dir.empty()) {
    model::LoadedModel loaded = model::load_model_dir(a.model_dir);
    vits = std::move(loaded.model);
    tokenizer = loaded.tokenizer;
    source = a.model_dir;
  } else {
    vits = std::make_unique<model::VitsModel>(io::VitsConfig::from_file(a.config_path));
    vits->initialize(a.seed);
    std::string tok = a.tokenizer_dir;
    if (tok.empty()) tok = std::filesystem::path(a.config_path).parent_path().string();
    if (tok.empty()) tok = ".";
    tokenizer = io::Tokenizer::from_dir(tok);
    source = a.config_path + " (random weights, seed " + std::to_string(a.seed) + ")";
  }
  const io::VitsConfig& c = vits->config();
  vits->to(device);

  model::SynthesisOptions opt;
  opt.noise_scale = c.noise_scale;
  opt.noise_scale_duration = c.noise_scale_duration;
  opt.seed = a.seed;
  const int hop = c.total_upsample();

  std::printf("bench_synth: %s on %s (%s), batch %d, %d warm-up + %d timed runs per target\n", source.c_str(),
              a.device.c_str(), device_name.c_str(), a.batch, a.warmup, a.runs);
  if (device == Device::CPU) std::printf("CPU kernels: %d OpenMP threads, %s\n", omp_get_max_threads(), blas_config().c_str());
  std::vector<Result> results;
  for (double target : targets) {
    Result r;
    r.target_seconds = target;
    // The sentence's words, cycled, until the text has the tokens for the target length.
    std::string text = a.text;
    io::TokenizerResult tokens;
    if (a.no_calibrate) {
      tokens = tokenizer.encode(text);
    } else {
      std::vector<std::string> words;
      std::istringstream ws(a.text);
      for (std::string w; ws >> w;) words.push_back(w);
      VC_CHECK(!words.empty(), "--text is empty");
      const double want_tokens = target * a.tokens_per_second;
      text.clear();
      for (size_t i = 0;; ++i) {
        VC_CHECK(i < 100000, "--text gives too few tokens to reach " << target << " s");
        text += (i ? " " : "") + words[i % words.size()];
        tokens = tokenizer.encode(text);
        if (static_cast<double>(tokens.ids.size()) >= want_tokens) break;
      }
    }
    r.tokens = static_cast<int64_t>(tokens.ids.size());
    const std::vector<std::vector<int32_t>> batch(static_cast<size_t>(a.batch), tokens.ids);

    auto synth_once = [&](model::SynthesisOutput* keep) {
      const auto t0 = std::chrono::steady_clock::now();
      model::SynthesisOutput out = vits->synthesize(batch, opt);
      const Tensor wave = out.waveform.to(Device::CPU);  // waits for the device
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // A fast run that produced garbage is no result: every sample must be finite.
      const std::vector<float> w = wave.to_float_vector();
      const auto bad = std::count_if(w.begin(), w.end(), [](float v) { return !std::isfinite(v); });
      VC_CHECK(!w.empty() && bad == 0, "synthesis on " << a.device << " produced " << bad << " non-finite of "
                                                        << w.size() << " waveform samples");
      if (keep) *keep = std::move(out);
      return s;
    };

    opt.speaking_rate = c.speaking_rate;
    if (!a.no_calibrate) {
      opt.speaking_rate = 1.0;
      model::SynthesisOutput first;
      synth_once(&first);  // also the first warm-up (cuDNN picks algorithms, caches fill)
      std::vector<float> ld = first.log_duration.to_float_vector();
      ld.resize(static_cast<size_t>(r.tokens));  // item 0 (all items are the same text)
      for (float& v : ld) v = std::exp(v);
      const int64_t target_frames = std::max<int64_t>(1, std::llround(target * c.sampling_rate / hop));
      opt.speaking_rate = solve_rate(ld, target_frames);
      const int64_t got = frames_at(ld, opt.speaking_rate);
      if (std::abs(got - target_frames) > 0.05 * target_frames)
        std::printf("warning: target %.1f s: %lld frames is the closest this text reaches (want %lld)\n", target,
                    static_cast<long long>(got), static_cast<long long>(target_frames));
    }
    r.speaking_rate = opt.speaking_rate;
    for (int i = 0; i < a.warmup; ++i) synth_once(nullptr);

    if (device == Device::CUDA) DeviceAllocator::instance().reset_peak();
    reset_cpu_peak_memory();
    model::SynthesisOutput out;
    for (int i = 0; i < a.runs; ++i) r.wall.push_back(synth_once(&out));
    if (device == Device::CUDA) {
      const DeviceMemoryStats st = DeviceAllocator::instance().stats();
      r.peak_bytes = st.peak_live_bytes;
      r.peak_reserved_bytes = st.peak_reserved_bytes;
    } else {
      r.peak_bytes = cpu_memory_stats().peak_bytes;
    }
    r.frames = out.frame_lengths[0];
    int64_t samples = 0;
    for (int64_t s : out.sample_lengths) samples += s;
    r.audio_seconds = static_cast<double>(samples) / c.sampling_rate;
    r.median = median_of(r.wall);
    results.push_back(r);
  }

  std::printf("\n%8s %7s %7s %7s %9s %10s %10s %8s %12s\n", "target_s", "tokens", "frames", "rate", "audio_s",
              "wall_s", "min_s", "RTF", "peak_mem");
  for (const Result& r : results) {
    const double mn = *std::min_element(r.wall.begin(), r.wall.end());
    std::printf("%8.1f %7lld %7lld %7.3f %9.3f %10.4f %10.4f %8.4f %12s\n", r.target_seconds,
                static_cast<long long>(r.tokens), static_cast<long long>(r.frames), r.speaking_rate, r.audio_seconds,
                r.median, mn, r.median / r.audio_seconds, format_bytes(r.peak_bytes).c_str());
  }
  std::printf("RTF = median wall time / audio seconds (all items of the batch); peak_mem = %s\n",
              device == Device::CUDA ? "peak live device memory (DeviceAllocator: tensors, weights and scratch)"
                                     : "peak host tensor memory");

  if (!a.json_path.empty()) {
    nlohmann::json j;
    j["program"] = "bench_synth";
    j["implementation"] = "vitscuda";
    j["device"] = a.device;
    j["device_name"] = device_name;
    if (device == Device::CPU) {
      j["cpu_threads"] = omp_get_max_threads();
      j["blas"] = blas_config();
    }
    j["model"] = source;
    j["seed"] = a.seed;
    j["batch"] = a.batch;
    j["warmup"] = a.warmup;
    j["runs"] = a.runs;
    j["text"] = a.text;
    j["timing"] = "synthesize() plus the waveform's copy to the host, steady clock";
    nlohmann::json cases = nlohmann::json::array();
    for (const Result& r : results)
      cases.push_back({{"target_seconds", r.target_seconds},
                       {"tokens", r.tokens},
                       {"frames", r.frames},
                       {"speaking_rate", r.speaking_rate},
                       {"audio_seconds", r.audio_seconds},
                       {"wall_seconds", r.median},
                       {"wall_seconds_runs", r.wall},
                       {"rtf", r.median / r.audio_seconds},
                       {"peak_memory_bytes", r.peak_bytes},
                       {"peak_reserved_bytes", r.peak_reserved_bytes}});
    j["cases"] = cases;
    write_json_file(a.json_path, j);
    std::printf("wrote %s\n", a.json_path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace vitscuda::bench

int main(int argc, char** argv) { return vitscuda::bench::bench_main(vitscuda::bench::run, argc, argv); }
