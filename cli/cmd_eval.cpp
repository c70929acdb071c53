// `vitscuda eval`: does the voice sound like the recordings? Free-running synthesis of the evaluation
// utterances scored against them (model/evaluation.h): MCD and log-mel L1 after DTW, duration ratio.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "common/error.h"
#include "io/dataset.h"
#include "model/evaluation.h"
#include "model/model_dir.h"
#include "model/trainer.h"

namespace fs = std::filesystem;

namespace vitscuda::cli {

namespace {

struct EvalArgs {
  std::string model_dir, data_dir, output;
  int64_t max_samples = 0;  // read only when --max-samples is given
  bool max_samples_given = false;
  double noise_scale = 0.667, noise_scale_duration = 0.8;
  uint64_t seed = 0;
  DeviceOptions device;
};

// While the JSON goes to stdout, every other line printed (the device, progress) goes to stderr,
// so that stdout is the JSON document alone.
class StdoutToStderr {
 public:
  explicit StdoutToStderr(bool active) : active_(active) {
    if (!active_) return;
    std::fflush(stdout);
    saved_ = ::dup(STDOUT_FILENO);
    VC_CHECK(saved_ >= 0 && ::dup2(STDERR_FILENO, STDOUT_FILENO) >= 0, "eval: cannot redirect stdout");
  }
  ~StdoutToStderr() { restore(); }
  StdoutToStderr(const StdoutToStderr&) = delete;
  StdoutToStderr& operator=(const StdoutToStderr&) = delete;
  void restore() {
    if (!active_) return;
    std::fflush(stdout);
    ::dup2(saved_, STDOUT_FILENO);
    ::close(saved_);
    active_ = false;
  }

 private:
  bool active_;
  int saved_ = -1;
};

// The cache `vitscuda train --data DIR` evaluates on (DIR/eval.vcds) when it holds utterances;
// otherwise the training cache, with a note.
std::string evaluation_cache(const std::string& data_dir, std::string& split) {
  VC_CHECK(fs::is_directory(data_dir), "--data " << data_dir << " is not a directory: give the prepared dataset "
                                                 << "directory (vitscuda prepare --out), as for vitscuda train");
  const std::string eval = (fs::path(data_dir) / "eval.vcds").string();
  const std::string train = (fs::path(data_dir) / "train.vcds").string();
  if (fs::exists(eval) && io::DatasetReader::open(eval, io::DatasetVerify::HeaderOnly).size() > 0) {
    split = "eval";
    return eval;
  }
  VC_CHECK(fs::exists(train), "--data " << data_dir << " holds neither eval.vcds nor train.vcds: give the prepared "
                                        << "dataset directory (vitscuda prepare --out)");
  std::fprintf(stderr, "note: %s has no evaluation utterances; evaluating on the training cache %s\n",
               data_dir.c_str(), train.c_str());
  split = "train";
  return train;
}

// The report keeps its keys in the order written (utterances, mean, settings), for people reading it.
using Json = nlohmann::ordered_json;

Json number_or_null(double v) { return std::isfinite(v) ? Json(v) : Json(); }

void run_eval(const EvalArgs& a) {
  VC_CHECK(!a.max_samples_given || a.max_samples >= 1,
           "--max-samples must be at least 1 (leave it out to evaluate every utterance), got " << a.max_samples);
  VC_CHECK(std::isfinite(a.noise_scale) && a.noise_scale >= 0, "--noise-scale must be >= 0, got " << a.noise_scale);
  VC_CHECK(std::isfinite(a.noise_scale_duration) && a.noise_scale_duration >= 0,
           "--noise-scale-duration must be >= 0, got " << a.noise_scale_duration);
  StdoutToStderr redirect(a.output.empty());
  std::string split;
  const std::string cache_path = evaluation_cache(a.data_dir, split);
  const io::DatasetReader cache = io::DatasetReader::open(cache_path, io::DatasetVerify::All);
  const size_t count = a.max_samples_given ? std::min<size_t>(cache.size(), static_cast<size_t>(a.max_samples))
                                           : cache.size();
  VC_CHECK(count > 0, cache_path << " holds no utterances to evaluate");

  const Device device = resolve_device(a.device, "eval");
  model::LoadedModel loaded = model::load_model_dir(a.model_dir);
  loaded.model->to(device);
  const io::VitsConfig& c = loaded.model->config();
  VC_CHECK(cache.sample_rate() == c.sampling_rate, cache_path << " was prepared at " << cache.sample_rate()
                                                              << " Hz but the model runs at " << c.sampling_rate
                                                              << " Hz: prepare the data with this model");
  const model::MelSpectrogram mel(model::mel_config_for(c));
  VC_CHECK(mel.n_mels() >= 2, "the model's mel has " << mel.n_mels() << " bin(s); the mel cepstrum needs at least 2");
  const int coefficients = std::min<int>(model::kMelCepstrumCoefficients, static_cast<int>(mel.n_mels()) - 1);
  model::FreeRunningSettings settings;
  settings.noise_scale = a.noise_scale;
  settings.noise_scale_duration = a.noise_scale_duration;
  settings.seed = a.seed;

  std::vector<model::UtteranceScores> scores;
  Json utterances = Json::array();
  for (size_t i = 0; i < count; ++i) {
    io::DatasetItem d = cache.item(i);
    const std::string name = d.id;
    model::UtteranceScores s;
    try {
      s = model::score_free_running(*loaded.model, mel, model::training_item_of(std::move(d)), settings, i);
    } catch (const std::exception& e) {
      VC_FAIL("utterance " << name << " (#" << i << " of " << cache_path << "): " << e.what());
    }
    VC_CHECK(std::isfinite(s.mcd) && std::isfinite(s.logmel_l1_dtw),
             "utterance " << name << " (#" << i << " of " << cache_path << "): the synthesised audio is not finite "
                          << "(NaN or Inf samples): the model " << a.model_dir << " is broken");
    std::printf("%s: MCD %.3f dB, log-mel L1 (DTW) %.4f, duration ratio %.3f (%lld / %lld frames)\n", name.c_str(),
                s.mcd, s.logmel_l1_dtw, s.duration_ratio, static_cast<long long>(s.frames_synth),
                static_cast<long long>(s.frames_ref));
    utterances.push_back({{"name", name},
                          {"mcd", s.mcd},
                          {"logmel_l1_dtw", s.logmel_l1_dtw},
                          {"duration_ratio", s.duration_ratio},
                          {"frames_synth", s.frames_synth},
                          {"frames_ref", s.frames_ref}});
    scores.push_back(s);
  }
  const model::MeanScores mean = model::mean_scores(scores);
  const model::MelConfig& mc = mel.config();
  const Json report = {
      {"utterances", utterances},
      {"mean",
       {{"mcd", number_or_null(mean.mcd)},
        {"logmel_l1_dtw", number_or_null(mean.logmel_l1_dtw)},
        {"duration_ratio", number_or_null(mean.duration_ratio)}}},
      {"settings",
       {{"model", a.model_dir},
        {"data", cache_path},
        {"split", split},
        {"utterance_count", count},
        {"max_samples", a.max_samples_given ? Json(a.max_samples) : Json()},
        {"noise_scale", a.noise_scale},
        {"noise_scale_duration", a.noise_scale_duration},
        {"speaking_rate", 1.0},
        {"seed", a.seed},
        {"seed_per_utterance", "seed + utterance index"},
        {"device", device_name(device)},
        {"mel",
         {{"sample_rate", mc.sample_rate},
          {"n_fft", mc.n_fft},
          {"hop", mc.hop},
          {"win", mc.win},
          {"n_mels", mc.n_mels},
          {"fmin", mc.fmin},
          {"fmax", mc.fmax > 0 ? mc.fmax : mc.sample_rate / 2.0}}},
        {"cepstral_coefficients", coefficients},
        {"dtw", "steps (1,0) (0,1) (1,1), no band, Euclidean distance of mel-cepstral coefficients 1.." +
                    std::to_string(coefficients)}}}};
  char summary[256];
  std::snprintf(summary, sizeof summary,
                "eval: %zu utterance(s) of %s: mean MCD %.3f dB, log-mel L1 (DTW) %.4f, duration ratio %.3f", count,
                cache_path.c_str(), mean.mcd, mean.logmel_l1_dtw, mean.duration_ratio);
  if (a.output.empty()) {
    std::printf("%s\n", summary);  // still on stderr
    redirect.restore();
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    model::write_file_atomic(a.output, report.dump(2) + "\n");
    std::printf("%s; report in %s\n", summary, a.output.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Score free-running synthesis of the evaluation utterances against their recordings (MCD, log-mel L1 "
              "after DTW, duration ratio)");
  cmd->add_option("--model", args->model_dir, "Model directory (HF VitsModel format, or a checkpoint)")->required();
  cmd->add_option("--data", args->data_dir,
                  "Prepared dataset directory, as for train --data (its eval.vcds; train.vcds when that is empty)")
      ->required();
  CLI::Option* max_samples =
      cmd->add_option("--max-samples", args->max_samples, "Evaluate only the first N utterances (default: all)");
  cmd->add_option("--noise-scale", args->noise_scale, "Prior noise scale (default 0.667)");
  cmd->add_option("--noise-scale-duration", args->noise_scale_duration, "Duration noise scale (default 0.8)");
  cmd->add_option("--seed", args->seed, "Seed: utterance i is synthesised with seed + i (default 0)");
  cmd->add_option("--output", args->output, "Write the JSON report here (default: stdout, other lines to stderr)");
  add_device_options(cmd, args->device);
  cmd->callback([args, max_samples] {
    args->max_samples_given = max_samples->count() > 0;
    run_eval(*args);
  });
}

}  // namespace vitscuda::cli
