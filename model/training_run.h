// `vitscuda train`: the training loop over a prepared dataset, with checkpoints,
// resume, metrics, evaluation and the failure policy (nothing is skipped silently).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/metrics_log.h"
#include "io/tensorboard.h"
#include "model/evaluation.h"
#include "model/mel.h"
#include "model/model_dir.h"
#include "model/training_objective.h"

namespace vitscuda::model {

struct TrainRunOptions {
  std::string data_dir, model_dir, out_dir;
  std::string objective = "full";  // training_objective_names()
  Device device = Device::CPU;  // where the model, its gradients and the optimizer live
  int epochs = 1;
  int batch_size = 4;
  int grad_accum = 1;
  double learning_rate = 2e-4;
  int64_t warmup_steps = 0;
  double lr_decay = 1.0;
  double grad_clip = 1.0;
  double weight_decay = 0.01;
  int64_t max_samples = 0;   // 0: all
  int segment_frames = 32;   // 0: whole utterances
  bool recompute_decoder = false;  // recompute HiFi-GAN residual blocks in the backward (less memory)
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  // The vae objective's loss weights (finetune-hf-vits' defaults).
  double c_mel = 35.0;
  double c_kl = 1.5;
  double c_dur = 1.0;
  // The full objective's: loss weights (finetune-hf-vits' defaults), the discriminator's learning rate
  // (0: learning_rate) and warm-up (-1: the objective's default, see TrainerOptions::disc_warmup_steps).
  double c_gen = 1.0;
  double c_fm = 1.0;
  double c_disc = 3.0;
  double disc_learning_rate = 0;
  int64_t disc_warmup_steps = -1;
  // AdamW's betas; -1: the objective's default (full: finetune-hf-vits' 0.8, 0.99; vae and mel: torch's 0.9,
  // 0.999).
  double adam_beta1 = -1;
  double adam_beta2 = -1;
  uint64_t seed = 0;
  bool resume = false;
  // Optimizer steps between periodic checkpoints; 0: none, only the final checkpoint (and the one a
  // stop signal saves).
  int64_t checkpoint_every = 200;
  int keep_checkpoints = 3;
  int64_t eval_every = 200;        // optimizer steps between evaluations (on eval.vcds, if any); 0: never
  // Evaluation utterances also synthesised free-running and scored (model/evaluation.h); 0: none.
  int64_t eval_max_samples = 4;
  int64_t log_every = 10;
  int64_t max_steps = 0;           // 0: no limit (stop after `epochs`)
  double max_error_rate = 0.01;    // stop when more samples than this fail
  int max_bad_steps = 3;           // consecutive non-finite or exactly-zero losses before stopping
  // Test hook: the loss of these update attempts of this run (1-based, skipped ones counted) is
  // replaced by NaN, to exercise the failure policy.
  std::string inject_nan_steps;
};

// How a run ended; the command line maps it to the exit status (0, 1, 130).
enum class TrainingOutcome {
  Done,                    // every epoch (or --max-steps) trained; final checkpoint and model saved
  StoppedByFailurePolicy,  // too many failed samples or bad losses; no final checkpoint or model
  Interrupted,             // SIGINT or SIGTERM: a checkpoint was saved; continue with --resume
};

// One training run (fresh or resumed). The constructor loads the model and the data, builds the
// objective and opens the run directory, checking everything a run needs before the first step;
// run() trains. Errors (unusable inputs, a checkpoint that cannot be saved) throw with their cause.
// SIGINT and SIGTERM are caught from construction to destruction.
class TrainingRun {
 public:
  // The objective named by options.objective (make_training_objective).
  explicit TrainingRun(const TrainRunOptions& options);
  // An objective built by `make_objective` (an objective not selectable by name, e.g. in tests).
  TrainingRun(const TrainRunOptions& options, const TrainingObjectiveFactory& make_objective);
  ~TrainingRun();
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  TrainingOutcome run();

 private:
  class StopSignals;
  // Every failed sample is named, the first ten in full; the rest are counted by reason.
  struct FailureLog {
    int64_t attempted = 0, failed = 0;
    std::map<std::string, int64_t> by_reason;
    std::vector<std::string> names;
    void record(const std::string& id, const std::string& reason, const std::string& detail);
    void count(const std::string& reason);  // counted here, printed by the run-wide log
    double rate() const;
    std::string summary() const;
  };
  // The samples of one update: grad_accum micro-batches of validated items.
  struct PendingUpdate {
    std::vector<std::vector<TrainingItem>> micro_batches;
    int64_t consumed = 0;  // data-order positions used, failed samples included
  };
  using Clock = std::chrono::steady_clock;

  // Setup, in this order.
  void load_model_and_data();
  void open_checkpoints();
  void restore_or_start_fresh();
  void open_logs();

  // The loop.
  void print_plan() const;
  bool step_limit_reached() const;
  std::optional<TrainingOutcome> next_update();
  PendingUpdate gather_update();
  bool load_item(int64_t index, TrainingItem& item, std::string& reason, std::string& detail) const;
  std::optional<StepStats> run_objective_step(const PendingUpdate& update);
  std::optional<TrainingOutcome> failure_policy_on_data(bool step_ran, int64_t consumed);
  std::optional<TrainingOutcome> failure_policy_on_loss(const StepStats& stats);
  void record_step(const StepStats& stats);
  void print_progress(const StepStats& stats, double samples_per_second) const;
  bool evaluation_due() const;
  void evaluate();
  std::vector<TrainingItem> evaluation_batch() const;
  std::optional<MeanScores> free_running_scores(const std::vector<TrainingItem>& eb);
  void add_synthesised_sample(const TrainingItem& item);
  bool checkpoint_due() const;
  void save_checkpoint(const char* why);
  void save_checkpoint_files(const char* why);
  void finish_epoch();
  void finish_run();

  std::unique_ptr<StopSignals> stop_signals_;
  TrainRunOptions options_;
  Clock::time_point run_start_;
  LoadedModel loaded_;
  std::optional<io::DatasetReader> train_;
  std::unique_ptr<io::DatasetReader> eval_;
  int64_t count_ = 0;  // samples used per epoch
  std::unique_ptr<TrainingObjective> objective_;
  std::string checkpoints_dir_;
  io::TrainerState state_;
  std::unique_ptr<io::MetricsLog> metrics_;
  std::unique_ptr<io::EventWriter> events_;
  std::optional<MelSpectrogram> sample_mel_;  // the evaluation sample's mel image (tables built once)
  std::set<int64_t> poisoned_attempts_;  // --inject-nan-steps

  bool tty_ = false;
  FailureLog failures_;        // this run
  FailureLog epoch_failures_;  // this epoch
  int bad_steps_ = 0;          // consecutive non-finite or zero losses
  std::vector<double> loss_sums_;  // per loss term, this epoch
  double loss_sum_ = 0;            // total loss, this epoch
  int64_t loss_n_ = 0;
  Clock::time_point loop_start_, epoch_start_;
  int64_t samples_this_run_ = 0;
  bool first_batch_ = true;
  int64_t attempts_ = 0;  // update attempts in this run, counting skipped ones (for --inject-nan-steps)
};

}  // namespace vitscuda::model
