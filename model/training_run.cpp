#include "model/training_run.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/metrics_log.h"
#include "io/tensorboard.h"
#include "kernels/error.h"
#include "model/model_dir.h"
#include "model/trainer.h"

namespace fs = std::filesystem;

namespace vitscuda::model {

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

struct SignalGuard {
  struct sigaction old_int {}, old_term {};
  SignalGuard() {
    g_stop_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

// Every failed sample is named, the first ten in full; the rest are counted by reason.
struct FailureLog {
  int64_t attempted = 0, failed = 0;
  std::map<std::string, int64_t> by_reason;
  std::vector<std::string> names;
  void record(const std::string& id, const std::string& reason, const std::string& detail) {
    ++failed;
    ++by_reason[reason];
    if (failed <= 10)
      std::fprintf(stderr, "\nsample %s failed: %s: %s\n", id.c_str(), reason.c_str(), detail.c_str());
    else if (failed == 11)
      std::fprintf(stderr, "\n(further failures are counted, not printed; see the epoch summary)\n");
    if (names.size() < 50) names.push_back(id);
  }
  double rate() const { return attempted ? static_cast<double>(failed) / static_cast<double>(attempted) : 0.0; }
  std::string summary() const {
    std::ostringstream os;
    os << failed << " of " << attempted << " samples failed";
    for (const auto& [reason, n] : by_reason) os << "; " << reason << ": " << n;
    return os.str();
  }
};

// The epoch's batches: a seeded shuffle, then length-sorted buckets of 32 batches (little padding),
// then the batch order shuffled again. A pure function of (seed, epoch): resume recomputes it.
std::vector<int64_t> epoch_order(const io::DatasetReader& data, int64_t count, int batch_size, uint64_t seed,
                                 int64_t epoch) {
  Rng rng(seed * 1000003ULL + static_cast<uint64_t>(epoch) + 0x9e3779b97f4a7c15ULL);
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = count - 1; i > 0; --i) std::swap(order[i], order[static_cast<int64_t>(rng.uniform() * (i + 1))]);
  const int64_t bucket = static_cast<int64_t>(batch_size) * 32;
  for (int64_t start = 0; start < count; start += bucket) {
    auto end = order.begin() + std::min(count, start + bucket);
    std::stable_sort(order.begin() + start, end,
                     [&](int64_t a, int64_t b) { return data.num_samples(a) > data.num_samples(b); });
  }
  std::vector<std::vector<int64_t>> batches;
  for (int64_t start = 0; start < count; start += batch_size)
    batches.emplace_back(order.begin() + start, order.begin() + std::min(count, start + batch_size));
  for (int64_t i = static_cast<int64_t>(batches.size()) - 1; i > 0; --i)
    std::swap(batches[i], batches[static_cast<int64_t>(rng.uniform() * (i + 1))]);
  std::vector<int64_t> flat;
  for (const auto& b : batches) flat.insert(flat.end(), b.begin(), b.end());
  return flat;
}

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}


}  // namespace

int run_training(const TrainRunOptions& o) {
  VC_CHECK(o.batch_size >= 1 && o.grad_accum >= 1 && o.epochs >= 1,
           "--batch-size, --grad-accum and --epochs must be >= 1");
  SignalGuard signals;
  const auto run_start = std::chrono::steady_clock::now();

  // Model, data, trainer.
  LoadedModel loaded = load_model_dir(o.model_dir);
  VitsModel& vits = *loaded.model;
  vits.to(o.device);
  const io::VitsConfig& c = vits.config();
  io::DatasetReader train = io::DatasetReader::open((fs::path(o.data_dir) / "train.vcds").string(),
                                                    io::DatasetVerify::HeaderOnly);
  std::unique_ptr<io::DatasetReader> eval;
  if (fs::exists(fs::path(o.data_dir) / "eval.vcds"))
    eval = std::make_unique<io::DatasetReader>(
        io::DatasetReader::open((fs::path(o.data_dir) / "eval.vcds").string(), io::DatasetVerify::All));
  VC_CHECK(train.sample_rate() == c.sampling_rate, train.path() << " was prepared at " << train.sample_rate()
                                                                 << " Hz but the model runs at " << c.sampling_rate
                                                                 << " Hz: prepare the data with this model");
  const int64_t count = o.max_samples > 0 ? std::min<int64_t>(o.max_samples, train.size()) : train.size();
  VC_CHECK(count > 0, train.path() << " holds no samples");

  TrainerOptions topt;
  topt.learning_rate = o.learning_rate;
  topt.warmup_steps = o.warmup_steps;
  topt.lr_decay = o.lr_decay;
  topt.grad_clip = o.grad_clip;
  topt.adam.weight_decay = o.weight_decay;
  topt.step.noise_scale = o.noise_scale;
  topt.step.noise_scale_duration = o.noise_scale_duration;
  topt.step.segment_frames = o.segment_frames;
  topt.step.recompute_decoder = o.recompute_decoder;
  MelSpectrogram mel(mel_config_for(c));
  MelTrainer trainer(vits, mel, topt, o.seed);

  const std::string checkpoints = (fs::path(o.out_dir) / "checkpoints").string();
  fs::create_directories(checkpoints);
  io::remove_stale_temporary_checkpoints(checkpoints, &std::cerr);  // leftovers of a killed run
  io::TrainerState state;
  state.rng_seed = o.seed;
  nlohmann::json run_config = {{"data", o.data_dir},         {"model", o.model_dir},
                               {"batch_size", o.batch_size}, {"grad_accum", o.grad_accum},
                               {"lr", o.learning_rate},      {"segment_frames", o.segment_frames},
                               {"seed", o.seed},             {"max_samples", count}};
  if (o.resume) {
    io::CheckpointScan scan = io::latest_valid_checkpoint(checkpoints, &std::cerr);
    VC_CHECK(scan.latest, "--resume: no valid checkpoint in " << checkpoints);
    const io::CheckpointInfo& ck = *scan.latest;
    load_parameters_strict(ck.path_of(io::kModelFileName), vits.params());
    io::load_optimizer_state(ck.path_of(io::kOptimizerFileName), trainer.optimizer());
    state = io::read_trainer_state(ck.path_of(io::kTrainerStateFileName));
    VC_CHECK(state.rng_seed == o.seed, "--resume: the checkpoint was made with --seed " << state.rng_seed
                                                                                       << ", not " << o.seed);
    trainer.rng().set_offset(state.rng_offset);
    std::printf("resumed from %s: step %lld, epoch %lld, %lld samples into the epoch\n", ck.path.c_str(),
                static_cast<long long>(state.step), static_cast<long long>(state.epoch),
                static_cast<long long>(state.position_in_epoch));
    std::fflush(stdout);  // in the log at once: which checkpoint a run continues from
  } else {
    io::CheckpointScan scan = io::latest_valid_checkpoint(checkpoints, nullptr);
    VC_CHECK(!scan.latest, checkpoints << " already holds checkpoints (newest " << scan.latest->path
                                       << "): pass --resume to continue, or choose another --out");
  }
  state.config = run_config;

  io::MetricsLog metrics((fs::path(o.out_dir) / "metrics.jsonl").string());
  // The log continues from the step the run starts at (0 for a fresh start): records a killed run
  // made after its last checkpoint are made again below.
  metrics.truncate_after_step(state.step, &std::cerr);
  io::EventWriter events((fs::path(o.out_dir) / "tensorboard").string());
  std::set<int64_t> poisoned;
  {
    std::istringstream is(o.inject_nan_steps);
    std::string tok;
    while (std::getline(is, tok, ','))
      if (!tok.empty()) poisoned.insert(std::stoll(tok));
  }

  auto save_checkpoint_files = [&](const char* why) {
    io::CheckpointWriter w(checkpoints, state.step);
    save_parameters(w.path_for(io::kModelFileName), vits.params(), WeightNormLayout::Legacy, {}, {{"format", "pt"}});
    w.add_file(io::kModelFileName);
    io::write_optimizer_state(w.path_for(io::kOptimizerFileName), trainer.optimizer());
    w.add_file(io::kOptimizerFileName);
    state.rng_offset = trainer.rng().offset();
    state.elapsed_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    w.write_json(io::kTrainerStateFileName, io::trainer_state_to_json(state));
    state.elapsed_seconds -= std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    // A checkpoint is also a model directory: synth and export work on it directly.
    w.write_file("config.json", c.to_json().dump(2) + "\n");
    for (const char* f : {"vocab.json", "tokenizer_config.json"})
      if (fs::exists(fs::path(o.model_dir) / f)) w.write_file(f, read_file((fs::path(o.model_dir) / f).string()));
    io::CheckpointInfo info = w.commit();
    io::prune_checkpoints(checkpoints, o.keep_checkpoints, nullptr);
    std::printf("\ncheckpoint (%s): %s\n", why, info.path.c_str());
    std::fflush(stdout);
  };
  auto save_checkpoint = [&](const char* why) {
    try {
      save_checkpoint_files(why);
    } catch (const std::exception& e) {
      // Say what is on disk now, as a resume would find it.
      std::string newest = "none";
      try {
        if (const auto scan = io::latest_valid_checkpoint(checkpoints, nullptr); scan.latest) newest = scan.latest->path;
      } catch (const std::exception& scan_error) {
        newest = std::string("unknown (") + scan_error.what() + ")";
      }
      VC_FAIL("cannot save the checkpoint of step " << state.step << " in " << checkpoints << ": " << e.what()
                                                    << "; the newest valid checkpoint is " << newest);
    }
  };

  // Validation a sample must pass before it joins a batch.
  const int64_t hop = c.total_upsample();
  auto load_item = [&](int64_t index, TrainingItem& item, std::string& reason, std::string& detail) -> bool {
    io::DatasetItem d;
    try {
      d = train.item(static_cast<size_t>(index));
    } catch (const std::exception& e) {
      reason = "unreadable cache item";
      detail = e.what();
      return false;
    }
    item.ids = std::move(d.ids);
    item.wave = std::move(d.samples);
    item.speaker_id = d.speaker;
    if (item.ids.empty()) reason = "no tokens";
    else if (static_cast<int64_t>(item.wave.size()) / hop < 1) reason = "shorter than one frame";
    for (int32_t id : item.ids)
      if (reason.empty() && (id < 0 || id >= c.vocab_size)) reason = "token id " + std::to_string(id) + " outside the vocabulary";
    for (float v : item.wave)
      if (reason.empty() && !std::isfinite(v)) reason = "non-finite audio sample";
    if (c.num_speakers > 1 && reason.empty() && (item.speaker_id < 0 || item.speaker_id >= c.num_speakers))
      reason = "speaker id " + std::to_string(item.speaker_id) + " outside 0.." + std::to_string(c.num_speakers - 1);
    if (!reason.empty()) {
      detail = d.id;
      return false;
    }
    return true;
  };

  FailureLog failures;
  int bad_steps = 0;
  const int64_t per_update = static_cast<int64_t>(o.batch_size) * o.grad_accum;
  const int64_t updates_per_epoch = (count + per_update - 1) / per_update;
  const bool tty = isatty(STDOUT_FILENO);
  std::printf("training %lld samples (%.1f min of audio in the cache), %d epoch(s), batch %d x %d accumulation, "
              "%lld updates per epoch, %s\n",
              static_cast<long long>(count), train.total_seconds() / 60.0, o.epochs, o.batch_size, o.grad_accum,
              static_cast<long long>(updates_per_epoch), trainer.schedule().describe().c_str());
  std::fflush(stdout);
  double loss_sum = 0;
  int64_t loss_n = 0;
  int exit_code = 0;
  const auto loop_start = std::chrono::steady_clock::now();
  int64_t samples_this_run = 0;
  bool first_batch = !o.resume;
  int64_t attempts = 0;  // update attempts in this run, counting skipped ones (for --inject-nan-steps)

  for (; state.epoch < o.epochs; ++state.epoch, state.position_in_epoch = 0) {
    state.data_order = epoch_order(train, count, o.batch_size, o.seed, state.epoch);
    FailureLog epoch_failures;
    const auto epoch_start = std::chrono::steady_clock::now();
    while (state.position_in_epoch < count) {
      if (o.max_steps > 0 && state.step >= o.max_steps) break;
      // Gather grad_accum micro-batches of validated samples.
      std::vector<std::vector<TrainingItem>> micro;
      std::vector<std::string> ids_in_update;
      int64_t consumed = 0;
      for (int m = 0; m < o.grad_accum && state.position_in_epoch + consumed < count; ++m) {
        std::vector<TrainingItem> batch;
        for (int k = 0; k < o.batch_size && state.position_in_epoch + consumed < count; ++k, ++consumed) {
          const int64_t index = state.data_order[state.position_in_epoch + consumed];
          TrainingItem item;
          std::string reason, detail;
          ++failures.attempted;
          ++epoch_failures.attempted;
          if (load_item(index, item, reason, detail)) {
            batch.push_back(std::move(item));
          } else {
            const std::string name = "#" + std::to_string(index);
            failures.record(name, reason, detail);
            epoch_failures.failed++;
            epoch_failures.by_reason[reason]++;
          }
        }
        if (!batch.empty()) micro.push_back(std::move(batch));
      }
      StepStats st;
      bool step_ok = !micro.empty();
      if (step_ok) {
        if (poisoned.count(++attempts)) trainer.poison_next_step();
        try {
          st = trainer.step(micro, state.epoch);
        } catch (const std::exception& e) {
          step_ok = false;
          for (const auto& b : micro)
            for (size_t k = 0; k < b.size(); ++k) {
              failures.record("batch at position " + std::to_string(state.position_in_epoch), "training step failed",
                              e.what());
              epoch_failures.failed++;
              epoch_failures.by_reason["training step failed"]++;
            }
        }
      }
      if (first_batch && !step_ok) {
        std::fprintf(stderr, "error: the first batch failed entirely (%s); stopping: fix the data or the model\n",
                     failures.summary().c_str());
        return 1;
      }
      first_batch = false;
      state.position_in_epoch += consumed;
      if (failures.attempted >= std::min<int64_t>(count, 20) && failures.rate() > o.max_error_rate) {
        std::fprintf(stderr, "error: %s (%.1f%%, more than --max-error-rate %.1f%%); stopping\n",
                     failures.summary().c_str(), 100 * failures.rate(), 100 * o.max_error_rate);
        return 1;
      }
      if (!step_ok) continue;
      samples_this_run += st.items;
      if (!st.finite || st.loss == 0.0) {
        ++bad_steps;
        std::fprintf(stderr, "\nstep %lld: loss %s; the update was %s (%d consecutive)\n",
                     static_cast<long long>(state.step + 1), st.finite ? "exactly 0" : "not finite",
                     st.finite ? "applied" : "skipped", bad_steps);
        if (bad_steps >= o.max_bad_steps) {
          std::fprintf(stderr, "error: %d consecutive steps with a %s loss: training is not learning anything; "
                               "stopping (lower --lr, check the data)\n",
                       bad_steps, st.finite ? "zero" : "non-finite");
          return 1;
        }
        if (!st.finite) continue;
      } else {
        bad_steps = 0;
      }
      ++state.step;
      state.learning_rate = st.learning_rate;
      loss_sum += st.loss;
      ++loss_n;
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
      const double rate = samples_this_run / std::max(elapsed, 1e-9);
      const int64_t remaining = (o.epochs - state.epoch - 1) * count + (count - state.position_in_epoch);
      metrics.append({{"step", state.step}, {"epoch", state.epoch}, {"loss", st.loss}, {"grad_norm", st.grad_norm},
                     {"lr", st.learning_rate}, {"samples_per_s", rate}, {"step_s", st.seconds},
                     {"peak_mb", st.peak_bytes / 1048576.0}, {"failed_samples", failures.failed}});
      events.add_scalar("train/loss", st.loss, state.step);
      events.add_scalar("train/grad_norm", st.grad_norm, state.step);
      events.add_scalar("train/learning_rate", st.learning_rate, state.step);
      events.add_scalar("train/samples_per_second", rate, state.step);
      if (tty || state.step % std::max<int64_t>(1, o.log_every) == 0 || state.step == 1) {
        const int width = 24;
        const int filled = static_cast<int>(width * state.position_in_epoch / count);
        std::printf("%sepoch %lld/%d [%s%s] %lld/%lld step %lld loss %.4f (avg %.4f) %.2f samples/s ETA %s mem %.0f MB%s",
                    tty ? "\r" : "", static_cast<long long>(state.epoch + 1), o.epochs,
                    std::string(filled, '=').c_str(), std::string(width - filled, ' ').c_str(),
                    static_cast<long long>(state.position_in_epoch), static_cast<long long>(count),
                    static_cast<long long>(state.step), st.loss, loss_sum / loss_n, rate,
                    format_duration(remaining / std::max(rate, 1e-9)).c_str(), st.peak_bytes / 1048576.0,
                    tty ? "" : "\n");
        std::fflush(stdout);
      }
      if (eval && o.eval_every > 0 && state.step % o.eval_every == 0) {
        std::vector<TrainingItem> eb;
        for (size_t i = 0; i < std::min<size_t>(eval->size(), 8); ++i) {
          io::DatasetItem d = eval->item(i);
          TrainingItem t;
          t.ids = d.ids;
          t.wave = d.samples;
          t.speaker_id = d.speaker;
          eb.push_back(std::move(t));
        }
        const double el = trainer.evaluate(eb);
        metrics.append({{"step", state.step}, {"eval_loss", el}});
        events.add_scalar("eval/loss", el, state.step);
        // Listen and look: the first eval sentence synthesised by the current model, and its mel.
        SynthesisOptions so;
        so.seed = o.seed;
        so.speaker_id = c.num_speakers > 1 ? std::max(0, eb[0].speaker_id) : -1;
        SynthesisOutput syn = vits.synthesize({eb[0].ids}, so);
        std::vector<float> audio = syn.waveform.to_float_vector();
        audio.resize(static_cast<size_t>(syn.sample_lengths[0]));
        events.add_audio("eval/sample_0", audio, c.sampling_rate, state.step);
        if (audio.size() > static_cast<size_t>(mel.config().n_fft))
          events.add_image("eval/mel_0", io::render_spectrogram(mel.log_mel_of(audio)), state.step);
        events.flush();
        if (!state.best_eval_loss || el < *state.best_eval_loss) state.best_eval_loss = el;
        std::printf("%seval loss %.4f at step %lld\n", tty ? "\n" : "", el, static_cast<long long>(state.step));
      }
      if (g_stop_signal.load()) {
        save_checkpoint(g_stop_signal.load() == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)");
        std::printf("stopped by signal; continue with --resume\n");
        return 130;
      }
      if (o.checkpoint_every > 0 && state.step % o.checkpoint_every == 0) save_checkpoint("periodic");
    }
    if (o.max_steps > 0 && state.step >= o.max_steps) break;
    const double es = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    std::printf("%sepoch %lld done in %s: mean loss %.4f; %s\n", tty ? "\n" : "",
                static_cast<long long>(state.epoch + 1), format_duration(es).c_str(),
                loss_n ? loss_sum / loss_n : 0.0, epoch_failures.summary().c_str());
    loss_sum = 0;
    loss_n = 0;
  }
  // The state a resumed run continues from: the end of this run.
  if (state.position_in_epoch >= count) {
    state.position_in_epoch = 0;
  }
  save_checkpoint("final");
  const std::string final_dir = (fs::path(o.out_dir) / "final_model").string();
  save_model_dir(final_dir, vits, o.model_dir, WeightNormLayout::Legacy, {}, {{"format", "pt"}});
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  std::printf("training done: %lld updates in %s (%lld samples, %s); final model in %s\n",
              static_cast<long long>(state.step), format_duration(total).c_str(),
              static_cast<long long>(samples_this_run), failures.summary().c_str(), final_dir.c_str());
  return exit_code;
}

}  // namespace vitscuda::model
