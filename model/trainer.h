// One optimizer update of the mel-mode objective: forward on the tape, backward,
// gradient-norm clipping, fused AdamW, with gradient accumulation over micro-batches.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/optimizer.h"
#include "model/train_step.h"

namespace vitscuda::model {

struct TrainerOptions {
  double learning_rate = 2e-4;
  int64_t warmup_steps = 0;
  double lr_decay = 1.0;  // per epoch (VITS: 0.999875); 1 = constant
  AdamWConfig adam;       // torch.optim.AdamW defaults
  double grad_clip = 1.0;  // max gradient L2 norm; 0 disables clipping
  TrainStepOptions step;
};

struct StepStats {
  double loss = 0;         // mean over the micro-batches
  double grad_norm = 0;    // before clipping
  double learning_rate = 0;
  double seconds = 0;
  size_t peak_bytes = 0;   // tensor memory high-water mark during the update (the device's on CUDA)
  int64_t items = 0;
  bool finite = true;      // false: loss or gradients were not finite; the update was skipped
};

class MelTrainer {
 public:
  MelTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed);

  // One update from `micro_batches` (each a batch; losses averaged). A non-finite loss or gradient
  // skips the update and is reported in the stats, never applied.
  StepStats step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch);
  // Test hook for the failure policy: the next step's loss is replaced by NaN (its update is skipped).
  void poison_next_step() { poison_next_ = true; }
  // Loss without gradients (evaluation).
  double evaluate(const std::vector<TrainingItem>& batch);

  int64_t updates() const { return optimizer_.step_count(); }
  AdamW& optimizer() { return optimizer_; }
  Rng& rng() { return rng_; }
  const LrSchedule& schedule() const { return schedule_; }
  const MelSpectrogram& mel() const { return mel_; }

 private:
  VitsModel& model_;
  MelSpectrogram mel_;
  TrainerOptions options_;
  AdamW optimizer_;
  LrSchedule schedule_;
  Rng rng_;
  bool poison_next_ = false;
};

LrSchedule make_schedule(const TrainerOptions& options);
// The mel settings VITS uses for a model: n_fft from spectrogram_bins, hop = decoder upsampling,
// n_mels capped at spectrogram_bins / 4 for tiny test models.
MelConfig mel_config_for(const io::VitsConfig& config, int n_mels = 80);

}  // namespace vitscuda::model
