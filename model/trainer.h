// The mel objective ("mel"): one optimizer update is the mel-mode step's forward on the tape,
// backward, gradient-norm clipping and fused AdamW, with gradient accumulation over micro-batches.
// Its single loss term is "mel" (the masked log-mel L1).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/optimizer.h"
#include "model/train_step.h"
#include "model/training_objective.h"

namespace vitscuda::model {

class MelTrainer : public TrainingObjective {
 public:
  static constexpr const char* kName = "mel";

  MelTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed);

  std::string name() const override { return kName; }
  std::vector<std::string> loss_terms() const override { return {"mel"}; }
  std::string describe_schedule() const override { return schedule_.describe(); }
  StepStats step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) override;
  void poison_next_step() override { poison_next_ = true; }
  LossValues evaluate(const std::vector<TrainingItem>& batch) override;
  // The AdamW moments, in the checkpoint's optimizer.safetensors.
  void save_state(io::CheckpointWriter& checkpoint) override;
  void load_state(const io::CheckpointInfo& checkpoint) override;
  uint64_t rng_offset() const override { return rng_.offset(); }
  void set_rng_offset(uint64_t offset) override { rng_.set_offset(offset); }

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
