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

#include "common/error.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/metrics_log.h"
#include "io/tensorboard.h"
#include "model/evaluation.h"
#include "model/model_dir.h"
#include "model/trainer.h"

namespace fs = std::filesystem;

namespace vitscuda::model {

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

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

// The named terms of a loss, when there is more than one: " (mel 0.4200, kl 1.2000)". A single
// term is the whole loss, already printed as such.
std::string terms_text(const std::vector<LossTerm>& terms) {
  if (terms.size() < 2) return "";
  std::string out = " (";
  char buf[64];
  for (size_t i = 0; i < terms.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%s %.4f", i ? ", " : "", terms[i].name.c_str(), terms[i].value);
    out += buf;
  }
  return out + ")";
}

// The settings of the run that the objective takes.
TrainerOptions trainer_options_of(const TrainRunOptions& o) {
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
  topt.step.c_mel = o.c_mel;
  topt.step.c_kl = o.c_kl;
  topt.step.c_dur = o.c_dur;
  topt.step.c_gen = o.c_gen;
  topt.step.c_fm = o.c_fm;
  topt.step.c_disc = o.c_disc;
  topt.model_dir = o.model_dir;
  topt.disc_learning_rate = o.disc_learning_rate;
  topt.disc_warmup_steps = o.disc_warmup_steps;
  topt.adam_beta1 = o.adam_beta1;
  topt.adam_beta2 = o.adam_beta2;
  return topt;
}

}  // namespace

// Catches SIGINT and SIGTERM while a run exists: the loop saves a checkpoint and stops.
class TrainingRun::StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int received() const { return g_stop_signal.load(); }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

void TrainingRun::FailureLog::record(const std::string& id, const std::string& reason, const std::string& detail) {
  ++failed;
  ++by_reason[reason];
  if (failed <= 10)
    std::fprintf(stderr, "\nsample %s failed: %s: %s\n", id.c_str(), reason.c_str(), detail.c_str());
  else if (failed == 11)
    std::fprintf(stderr, "\n(further failures are counted, not printed; see the epoch summary)\n");
  if (names.size() < 50) names.push_back(id);
}

void TrainingRun::FailureLog::count(const std::string& reason) {
  ++failed;
  ++by_reason[reason];
}

double TrainingRun::FailureLog::rate() const {
  return attempted ? static_cast<double>(failed) / static_cast<double>(attempted) : 0.0;
}

std::string TrainingRun::FailureLog::summary() const {
  std::ostringstream os;
  os << failed << " of " << attempted << " samples failed";
  for (const auto& [reason, n] : by_reason) os << "; " << reason << ": " << n;
  return os.str();
}

// ---------------------------------------------------------------- setup

TrainingRun::TrainingRun(const TrainRunOptions& options)
    : TrainingRun(options, [name = require_training_objective_name(options.objective)](
                               VitsModel& model, const TrainerOptions& trainer_options, uint64_t seed) {
        return make_training_objective(name, model, trainer_options, seed);
      }) {}

TrainingRun::TrainingRun(const TrainRunOptions& options, const TrainingObjectiveFactory& make_objective)
    : stop_signals_(std::make_unique<StopSignals>()), options_(options), run_start_(Clock::now()) {
  const TrainRunOptions& o = options_;
  VC_CHECK(o.batch_size >= 1 && o.grad_accum >= 1 && o.epochs >= 1,
           "--batch-size, --grad-accum and --epochs must be >= 1");
  load_model_and_data();
  objective_ = make_objective(*loaded_.model, trainer_options_of(o), o.seed);
  VC_CHECK(objective_, "no training objective was built");
  open_checkpoints();
  restore_or_start_fresh();
  open_logs();
}

TrainingRun::~TrainingRun() = default;

void TrainingRun::load_model_and_data() {
  const TrainRunOptions& o = options_;
  loaded_ = load_model_dir(o.model_dir);
  VitsModel& vits = *loaded_.model;
  vits.to(o.device);
  const io::VitsConfig& c = vits.config();
  train_.emplace(
      io::DatasetReader::open((fs::path(o.data_dir) / "train.vcds").string(), io::DatasetVerify::HeaderOnly));
  if (fs::exists(fs::path(o.data_dir) / "eval.vcds"))
    eval_ = std::make_unique<io::DatasetReader>(
        io::DatasetReader::open((fs::path(o.data_dir) / "eval.vcds").string(), io::DatasetVerify::All));
  VC_CHECK(train_->sample_rate() == c.sampling_rate, train_->path() << " was prepared at " << train_->sample_rate()
                                                                     << " Hz but the model runs at " << c.sampling_rate
                                                                     << " Hz: prepare the data with this model");
  count_ = o.max_samples > 0 ? std::min<int64_t>(o.max_samples, train_->size()) : train_->size();
  VC_CHECK(count_ > 0, train_->path() << " holds no samples");
}

void TrainingRun::open_checkpoints() {
  checkpoints_dir_ = (fs::path(options_.out_dir) / "checkpoints").string();
  fs::create_directories(checkpoints_dir_);
  io::remove_stale_temporary_checkpoints(checkpoints_dir_, &std::cerr);  // leftovers of a killed run
}

void TrainingRun::restore_or_start_fresh() {
  const TrainRunOptions& o = options_;
  state_.rng_seed = o.seed;
  nlohmann::json run_config = {{"data", o.data_dir},         {"model", o.model_dir},
                               {"batch_size", o.batch_size}, {"grad_accum", o.grad_accum},
                               {"lr", o.learning_rate},      {"segment_frames", o.segment_frames},
                               {"seed", o.seed},             {"max_samples", count_},
                               {"objective", objective_->name()}};
  if (o.resume) {
    io::CheckpointScan scan = io::latest_valid_checkpoint(checkpoints_dir_, &std::cerr);
    VC_CHECK(scan.latest, "--resume: no valid checkpoint in " << checkpoints_dir_);
    const io::CheckpointInfo& ck = *scan.latest;
    load_parameters_strict(ck.path_of(io::kModelFileName), loaded_.model->params());
    objective_->load_state(ck);
    state_ = io::read_trainer_state(ck.path_of(io::kTrainerStateFileName));
    VC_CHECK(state_.rng_seed == o.seed, "--resume: the checkpoint was made with --seed " << state_.rng_seed
                                                                                         << ", not " << o.seed);
    // A checkpoint from before objectives were recorded was made by the only one there was: mel.
    const std::string saved_objective = state_.config.value("objective", std::string("mel"));
    VC_CHECK(saved_objective == objective_->name(),
             "--resume: the checkpoint " << ck.path << " was trained with --objective " << saved_objective
                                         << ", not " << objective_->name() << "; its optimizer state belongs to that "
                                         << "objective (pass --objective " << saved_objective << ")");
    objective_->set_rng_offset(state_.rng_offset);
    std::printf("resumed from %s: step %lld, epoch %lld, %lld samples into the epoch\n", ck.path.c_str(),
                static_cast<long long>(state_.step), static_cast<long long>(state_.epoch),
                static_cast<long long>(state_.position_in_epoch));
    std::fflush(stdout);  // in the log at once: which checkpoint a run continues from
  } else {
    io::CheckpointScan scan = io::latest_valid_checkpoint(checkpoints_dir_, nullptr);
    VC_CHECK(!scan.latest, checkpoints_dir_ << " already holds checkpoints (newest " << scan.latest->path
                                            << "): pass --resume to continue, or choose another --out");
  }
  state_.config = run_config;
}

void TrainingRun::open_logs() {
  metrics_ = std::make_unique<io::MetricsLog>((fs::path(options_.out_dir) / "metrics.jsonl").string());
  // The log continues from the step the run starts at (0 for a fresh start): records a killed run
  // made after its last checkpoint are made again below.
  metrics_->truncate_after_step(state_.step, &std::cerr);
  events_ = std::make_unique<io::EventWriter>((fs::path(options_.out_dir) / "tensorboard").string());
  std::istringstream is(options_.inject_nan_steps);
  std::string tok;
  while (std::getline(is, tok, ','))
    if (!tok.empty()) poisoned_attempts_.insert(std::stoll(tok));
}

// ---------------------------------------------------------------- the loop

TrainingOutcome TrainingRun::run() {
  tty_ = isatty(STDOUT_FILENO);
  first_batch_ = !options_.resume;
  loss_sums_.assign(objective_->loss_terms().size(), 0.0);
  print_plan();
  loop_start_ = Clock::now();
  for (; state_.epoch < options_.epochs; ++state_.epoch, state_.position_in_epoch = 0) {
    state_.data_order = epoch_order(*train_, count_, options_.batch_size, options_.seed, state_.epoch);
    epoch_failures_ = FailureLog{};
    epoch_start_ = Clock::now();
    while (state_.position_in_epoch < count_ && !step_limit_reached())
      if (const std::optional<TrainingOutcome> stop = next_update()) return *stop;
    if (step_limit_reached()) break;
    finish_epoch();
  }
  finish_run();
  return TrainingOutcome::Done;
}

void TrainingRun::print_plan() const {
  const int64_t per_update = static_cast<int64_t>(options_.batch_size) * options_.grad_accum;
  const int64_t updates_per_epoch = (count_ + per_update - 1) / per_update;
  std::printf("training %lld samples (%.1f min of audio in the cache), %d epoch(s), batch %d x %d accumulation, "
              "%lld updates per epoch, %s\n",
              static_cast<long long>(count_), train_->total_seconds() / 60.0, options_.epochs, options_.batch_size,
              options_.grad_accum, static_cast<long long>(updates_per_epoch), objective_->describe_schedule().c_str());
  std::printf("objective %s: loss = %s\n", objective_->name().c_str(), objective_->describe_loss().c_str());
  std::fflush(stdout);
}

bool TrainingRun::step_limit_reached() const { return options_.max_steps > 0 && state_.step >= options_.max_steps; }

// One update: gather its samples, run the objective, apply the failure policy, then log, evaluate
// and checkpoint as due. Returns the outcome when the run stops here.
std::optional<TrainingOutcome> TrainingRun::next_update() {
  const PendingUpdate update = gather_update();
  const std::optional<StepStats> stats = run_objective_step(update);
  if (const auto stop = failure_policy_on_data(stats.has_value(), update.consumed)) return stop;
  if (!stats) return std::nullopt;
  samples_this_run_ += stats->items;
  if (const auto stop = failure_policy_on_loss(*stats)) return stop;
  if (!stats->finite) return std::nullopt;  // skipped, not applied
  record_step(*stats);
  if (evaluation_due()) evaluate();
  if (const int sig = stop_signals_->received()) {
    save_checkpoint(sig == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)");
    std::printf("stopped by signal; continue with --resume\n");
    return TrainingOutcome::Interrupted;
  }
  if (checkpoint_due()) save_checkpoint("periodic");
  return std::nullopt;
}

TrainingRun::PendingUpdate TrainingRun::gather_update() {
  PendingUpdate u;
  const int64_t position = state_.position_in_epoch;
  for (int m = 0; m < options_.grad_accum && position + u.consumed < count_; ++m) {
    std::vector<TrainingItem> batch;
    for (int k = 0; k < options_.batch_size && position + u.consumed < count_; ++k, ++u.consumed) {
      const int64_t index = state_.data_order[position + u.consumed];
      TrainingItem item;
      std::string reason, detail;
      ++failures_.attempted;
      ++epoch_failures_.attempted;
      if (load_item(index, item, reason, detail)) {
        batch.push_back(std::move(item));
      } else {
        failures_.record("#" + std::to_string(index), reason, detail);
        epoch_failures_.count(reason);
      }
    }
    if (!batch.empty()) u.micro_batches.push_back(std::move(batch));
  }
  return u;
}

// Validation a sample must pass before it joins a batch.
bool TrainingRun::load_item(int64_t index, TrainingItem& item, std::string& reason, std::string& detail) const {
  const io::VitsConfig& c = loaded_.model->config();
  const int64_t hop = c.total_upsample();
  io::DatasetItem d;
  try {
    d = train_->item(static_cast<size_t>(index));
  } catch (const std::exception& e) {
    reason = "unreadable cache item";
    detail = e.what();
    return false;
  }
  item = training_item_of(std::move(d));
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
  // What the objective itself needs (e.g. a frame per token for the alignment search): an item of a cache
  // prepared before prepare rejected it is refused here by name.
  const ItemProblem problem = objective_->check_item(item);
  if (!problem.reason.empty()) {
    reason = problem.reason;
    detail = d.id + ": " + problem.detail;
    return false;
  }
  return true;
}

// The objective's update; nullopt when there was nothing to train on or the step threw (every
// sample of the update is then recorded as failed).
std::optional<StepStats> TrainingRun::run_objective_step(const PendingUpdate& update) {
  if (update.micro_batches.empty()) return std::nullopt;
  if (poisoned_attempts_.count(++attempts_)) objective_->poison_next_step();
  try {
    return objective_->step(update.micro_batches, state_.epoch);
  } catch (const std::exception& e) {
    for (const auto& b : update.micro_batches)
      for (size_t k = 0; k < b.size(); ++k) {
        failures_.record("batch at position " + std::to_string(state_.position_in_epoch), "training step failed",
                         e.what());
        epoch_failures_.count("training step failed");
      }
    return std::nullopt;
  }
}

// Stops when the first batch of a fresh run fails entirely, or when more samples than
// --max-error-rate have failed (judged after at least 20 attempts, or the whole data when smaller).
std::optional<TrainingOutcome> TrainingRun::failure_policy_on_data(bool step_ran, int64_t consumed) {
  if (first_batch_ && !step_ran) {
    std::fprintf(stderr, "error: the first batch failed entirely (%s); stopping: fix the data or the model\n",
                 failures_.summary().c_str());
    return TrainingOutcome::StoppedByFailurePolicy;
  }
  first_batch_ = false;
  state_.position_in_epoch += consumed;
  if (failures_.attempted >= std::min<int64_t>(count_, 20) && failures_.rate() > options_.max_error_rate) {
    std::fprintf(stderr, "error: %s (%.1f%%, more than --max-error-rate %.1f%%); stopping\n",
                 failures_.summary().c_str(), 100 * failures_.rate(), 100 * options_.max_error_rate);
    return TrainingOutcome::StoppedByFailurePolicy;
  }
  return std::nullopt;
}

// A non-finite loss skips the update, an exactly-zero one is applied; --max-bad-steps of either in
// a row stop the run.
std::optional<TrainingOutcome> TrainingRun::failure_policy_on_loss(const StepStats& st) {
  if (st.finite && st.loss != 0.0) {
    bad_steps_ = 0;
    return std::nullopt;
  }
  ++bad_steps_;
  std::fprintf(stderr, "\nstep %lld: loss %s; the update was %s (%d consecutive)\n",
               static_cast<long long>(state_.step + 1), st.finite ? "exactly 0" : "not finite",
               st.finite ? "applied" : "skipped", bad_steps_);
  if (bad_steps_ < options_.max_bad_steps) return std::nullopt;
  std::fprintf(stderr, "error: %d consecutive steps with a %s loss: training is not learning anything; "
                       "stopping (lower --lr, check the data)\n",
               bad_steps_, st.finite ? "zero" : "non-finite");
  return TrainingOutcome::StoppedByFailurePolicy;
}

// An applied update: the step counter, metrics.jsonl, TensorBoard and the progress line. A loss
// with several terms records each as "loss_<term>" beside the total "loss".
void TrainingRun::record_step(const StepStats& st) {
  ++state_.step;
  state_.learning_rate = st.learning_rate;
  loss_sum_ += st.loss;
  for (size_t i = 0; i < st.terms.size() && i < loss_sums_.size(); ++i) loss_sums_[i] += st.terms[i].value;
  ++loss_n_;
  const double elapsed = std::chrono::duration<double>(Clock::now() - loop_start_).count();
  const double rate = samples_this_run_ / std::max(elapsed, 1e-9);
  nlohmann::json record = {{"step", state_.step}, {"epoch", state_.epoch}, {"loss", st.loss}};
  if (st.terms.size() > 1)
    for (const LossTerm& t : st.terms) record["loss_" + t.name] = t.value;
  record.update({{"grad_norm", st.grad_norm}, {"lr", st.learning_rate}, {"samples_per_s", rate},
                 {"step_s", st.seconds}, {"peak_mb", st.peak_bytes / 1048576.0},
                 {"failed_samples", failures_.failed}});
  metrics_->append(record);
  events_->add_scalar("train/loss", st.loss, state_.step);
  if (st.terms.size() > 1)
    for (const LossTerm& t : st.terms) events_->add_scalar("train/loss_" + t.name, t.value, state_.step);
  events_->add_scalar("train/grad_norm", st.grad_norm, state_.step);
  events_->add_scalar("train/learning_rate", st.learning_rate, state_.step);
  events_->add_scalar("train/samples_per_second", rate, state_.step);
  if (tty_ || state_.step % std::max<int64_t>(1, options_.log_every) == 0 || state_.step == 1)
    print_progress(st, rate);
}

void TrainingRun::print_progress(const StepStats& st, double rate) const {
  const int64_t count = count_;
  const int64_t remaining = (options_.epochs - state_.epoch - 1) * count + (count - state_.position_in_epoch);
  const int width = 24;
  const int filled = static_cast<int>(width * state_.position_in_epoch / count);
  std::printf("%sepoch %lld/%d [%s%s] %lld/%lld step %lld loss %.4f (avg %.4f)%s %.2f samples/s ETA %s mem %.0f MB%s",
              tty_ ? "\r" : "", static_cast<long long>(state_.epoch + 1), options_.epochs,
              std::string(filled, '=').c_str(), std::string(width - filled, ' ').c_str(),
              static_cast<long long>(state_.position_in_epoch), static_cast<long long>(count),
              static_cast<long long>(state_.step), st.loss, loss_sum_ / loss_n_, terms_text(st.terms).c_str(), rate,
              format_duration(remaining / std::max(rate, 1e-9)).c_str(), st.peak_bytes / 1048576.0, tty_ ? "" : "\n");
  std::fflush(stdout);
}

// Every eval_every applied updates, when the data has an evaluation split; never with 0.
// An empty evaluation split (prepare --eval-fraction 0) means no evaluation.
bool TrainingRun::evaluation_due() const {
  return eval_ && eval_->size() > 0 && options_.eval_every > 0 && state_.step % options_.eval_every == 0;
}

// The objective's loss on the first eight evaluation utterances, and the first of them synthesised
// by the current model.
void TrainingRun::evaluate() {
  const std::vector<TrainingItem> eb = evaluation_batch();
  const LossValues el = objective_->evaluate(eb);
  nlohmann::json record = {{"step", state_.step}, {"eval_loss", el.total}};
  if (el.terms.size() > 1)
    for (const LossTerm& t : el.terms) record["eval_loss_" + t.name] = t.value;
  const std::optional<MeanScores> free_running = free_running_scores(eb);
  if (free_running)
    record.update({{"eval_mcd", free_running->mcd}, {"eval_logmel_l1_dtw", free_running->logmel_l1_dtw},
                   {"eval_duration_ratio", free_running->duration_ratio}});
  metrics_->append(record);
  events_->add_scalar("eval/loss", el.total, state_.step);
  if (free_running) {
    events_->add_scalar("eval/mcd", free_running->mcd, state_.step);
    events_->add_scalar("eval/logmel_l1_dtw", free_running->logmel_l1_dtw, state_.step);
    events_->add_scalar("eval/duration_ratio", free_running->duration_ratio, state_.step);
  }
  if (el.terms.size() > 1)
    for (const LossTerm& t : el.terms) events_->add_scalar("eval/loss_" + t.name, t.value, state_.step);
  add_synthesised_sample(eb[0]);
  if (!state_.best_eval_loss || el.total < *state_.best_eval_loss) state_.best_eval_loss = el.total;
  std::printf("%seval loss %.4f%s at step %lld\n", tty_ ? "\n" : "", el.total, terms_text(el.terms).c_str(),
              static_cast<long long>(state_.step));
  if (free_running)
    std::printf("eval free-running synthesis: MCD %.3f dB, log-mel L1 (DTW) %.4f, duration ratio %.3f\n",
                free_running->mcd, free_running->logmel_l1_dtw, free_running->duration_ratio);
}

// The first eval_max_samples evaluation utterances synthesised free-running and scored against their
// recordings, as `vitscuda eval --seed <the run's seed>` scores them; nullopt when there are none to score.
std::optional<MeanScores> TrainingRun::free_running_scores(const std::vector<TrainingItem>& eb) {
  const size_t n = std::min<size_t>(eb.size(), static_cast<size_t>(std::max<int64_t>(0, options_.eval_max_samples)));
  if (n == 0) return std::nullopt;
  if (!sample_mel_) sample_mel_.emplace(mel_config_for(loaded_.model->config()));
  const FreeRunningSettings settings{options_.noise_scale, options_.noise_scale_duration, options_.seed};
  return mean_scores(evaluate_free_running(
      *loaded_.model, *sample_mel_, std::vector<TrainingItem>(eb.begin(), eb.begin() + static_cast<int64_t>(n)),
      settings));
}

std::vector<TrainingItem> TrainingRun::evaluation_batch() const {
  std::vector<TrainingItem> eb;
  for (size_t i = 0; i < std::min<size_t>(eval_->size(), 8); ++i) {
    eb.push_back(training_item_of(eval_->item(i)));
  }
  return eb;
}

// Listen and look: `item`'s text synthesised by the current model, and its mel, in TensorBoard.
void TrainingRun::add_synthesised_sample(const TrainingItem& item) {
  VitsModel& vits = *loaded_.model;
  const io::VitsConfig& c = vits.config();
  SynthesisOptions so;
  so.seed = options_.seed;
  so.speaker_id = c.num_speakers > 1 ? std::max(0, item.speaker_id) : -1;
  SynthesisOutput syn = vits.synthesize({item.ids}, so);
  std::vector<float> audio = syn.waveform.to_float_vector();
  audio.resize(static_cast<size_t>(syn.sample_lengths[0]));
  events_->add_audio("eval/sample_0", audio, c.sampling_rate, state_.step);
  if (!sample_mel_) sample_mel_.emplace(mel_config_for(c));
  if (audio.size() > static_cast<size_t>(sample_mel_->config().n_fft))
    events_->add_image("eval/mel_0", io::render_spectrogram(sample_mel_->log_mel_of(audio)), state_.step);
  events_->flush();
}

// Every checkpoint_every applied updates; never with 0 (the final checkpoint is always saved).
bool TrainingRun::checkpoint_due() const {
  return options_.checkpoint_every > 0 && state_.step % options_.checkpoint_every == 0;
}

void TrainingRun::save_checkpoint(const char* why) {
  try {
    save_checkpoint_files(why);
  } catch (const std::exception& e) {
    // Say what is on disk now, as a resume would find it.
    std::string newest = "none";
    try {
      if (const auto scan = io::latest_valid_checkpoint(checkpoints_dir_, nullptr); scan.latest)
        newest = scan.latest->path;
    } catch (const std::exception& scan_error) {
      newest = std::string("unknown (") + scan_error.what() + ")";
    }
    VC_FAIL("cannot save the checkpoint of step " << state_.step << " in " << checkpoints_dir_ << ": " << e.what()
                                                  << "; the newest valid checkpoint is " << newest);
  }
}

void TrainingRun::save_checkpoint_files(const char* why) {
  const VitsModel& vits = *loaded_.model;
  io::CheckpointWriter w(checkpoints_dir_, state_.step);
  save_parameters(w.path_for(io::kModelFileName), vits.params(), WeightNormLayout::Legacy, {}, {{"format", "pt"}});
  w.add_file(io::kModelFileName);
  objective_->save_state(w);
  state_.rng_offset = objective_->rng_offset();
  const double this_run = std::chrono::duration<double>(Clock::now() - run_start_).count();
  state_.elapsed_seconds += this_run;
  w.write_json(io::kTrainerStateFileName, io::trainer_state_to_json(state_));
  state_.elapsed_seconds -= this_run;
  // A checkpoint is also a model directory: synth and export work on it directly.
  w.write_file("config.json", vits.config().to_json().dump(2) + "\n");
  for (const char* f : {"vocab.json", "tokenizer_config.json"})
    if (fs::exists(fs::path(options_.model_dir) / f))
      w.write_file(f, read_file((fs::path(options_.model_dir) / f).string()));
  io::CheckpointInfo info = w.commit();
  io::prune_checkpoints(checkpoints_dir_, options_.keep_checkpoints, nullptr);
  std::printf("\ncheckpoint (%s): %s\n", why, info.path.c_str());
  std::fflush(stdout);
}

void TrainingRun::finish_epoch() {
  const double es = std::chrono::duration<double>(Clock::now() - epoch_start_).count();
  std::vector<LossTerm> mean_terms;
  const std::vector<std::string> names = objective_->loss_terms();
  for (size_t i = 0; i < names.size(); ++i) mean_terms.push_back({names[i], loss_n_ ? loss_sums_[i] / loss_n_ : 0.0});
  std::printf("%sepoch %lld done in %s: mean loss %.4f%s; %s\n", tty_ ? "\n" : "",
              static_cast<long long>(state_.epoch + 1), format_duration(es).c_str(),
              loss_n_ ? loss_sum_ / loss_n_ : 0.0, terms_text(mean_terms).c_str(), epoch_failures_.summary().c_str());
  loss_sum_ = 0;
  loss_sums_.assign(names.size(), 0.0);
  loss_n_ = 0;
}

void TrainingRun::finish_run() {
  // The state a resumed run continues from: the end of this run.
  if (state_.position_in_epoch >= count_) state_.position_in_epoch = 0;
  save_checkpoint("final");
  const std::string final_dir = (fs::path(options_.out_dir) / "final_model").string();
  save_model_dir(final_dir, *loaded_.model, options_.model_dir, WeightNormLayout::Legacy, {}, {{"format", "pt"}});
  objective_->save_model_files(final_dir);
  const double total = std::chrono::duration<double>(Clock::now() - run_start_).count();
  std::printf("training done: %lld updates in %s (%lld samples, %s); final model in %s\n",
              static_cast<long long>(state_.step), format_duration(total).c_str(),
              static_cast<long long>(samples_this_run_), failures_.summary().c_str(), final_dir.c_str());
}

}  // namespace vitscuda::model
