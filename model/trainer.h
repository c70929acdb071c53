// The objectives that train the generator with one AdamW: "mel" (the frozen duration predictor's durations,
// log-mel L1 of the generated audio) and "vae" (posterior, alignment search, KL, duration and mel losses;
// model/vae_step.h); "full" (model/full_trainer.h) adds the discriminator and its own AdamW to "vae". One update
// is the objective's forward on the tape, backward, gradient-norm clipping and the fused AdamW, with gradient
// accumulation over micro-batches.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/optimizer.h"
#include "model/train_step.h"
#include "model/training_objective.h"

namespace vitscuda::model {

// The loss of one forward: what the optimiser minimises and its named, unweighted parts (scalars on the tape).
struct ForwardLoss {
  Tensor total;
  std::vector<std::pair<std::string, Tensor>> terms;
  Tensor generated_logmel, target_logmel;  // what the mel term compared, [B, n_mels, frames]
  std::vector<int64_t> target_frames;      // the targets' frames per item
};

class GeneratorTrainer : public TrainingObjective {
 public:
  std::string describe_schedule() const override { return schedule_.describe(); }
  StepStats step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) override;
  void poison_next_step() override { poison_next_ = true; }
  LossValues evaluate(const std::vector<TrainingItem>& batch) override;
  // The AdamW moments, in the checkpoint's optimizer.safetensors.
  void save_state(io::CheckpointWriter& checkpoint) override;
  void load_state(const io::CheckpointInfo& checkpoint) override;
  uint64_t rng_offset() const override { return rng_.offset(); }
  void set_rng_offset(uint64_t offset) override { rng_.set_offset(offset); }

  // One forward with the training options, recording on the current tape when one records (selftest).
  ForwardLoss forward_once(const std::vector<TrainingItem>& batch, Rng& rng) { return forward(batch, options_.step, rng); }

  int64_t updates() const { return optimizer_.step_count(); }
  AdamW& optimizer() { return optimizer_; }
  Rng& rng() { return rng_; }
  const LrSchedule& schedule() const { return schedule_; }
  const MelSpectrogram& mel() const { return mel_; }

 protected:
  // `trainable` selects the parameters that get gradients (the first objective built on a model decides).
  GeneratorTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed,
                   bool (*trainable)(const std::string&));
  // The objective's forward for one batch, recording on the current tape when one records.
  virtual ForwardLoss forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) = 0;
  // The step options evaluation runs with.
  virtual TrainStepOptions evaluation_options() const = 0;

  VitsModel& model_;
  MelSpectrogram mel_;
  TrainerOptions options_;

 private:
  AdamW optimizer_;
  LrSchedule schedule_;
  Rng rng_;
  bool poison_next_ = false;
};

// "mel": its single loss term is "mel" (the masked log-mel L1).
class MelTrainer : public GeneratorTrainer {
 public:
  static constexpr const char* kName = "mel";
  MelTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed);
  std::string name() const override { return kName; }
  std::vector<std::string> loss_terms() const override { return {"mel"}; }
  std::string describe_loss() const override;

 protected:
  ForwardLoss forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) override;
  // Whole utterances.
  TrainStepOptions evaluation_options() const override;
};

// "vae": loss terms "mel", "kl", "dur" (unweighted); the total weights them with c_mel, c_kl, c_dur.
class VaeTrainer : public GeneratorTrainer {
 public:
  static constexpr const char* kName = "vae";
  VaeTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed);
  std::string name() const override { return kName; }
  std::vector<std::string> loss_terms() const override { return {"mel", "kl", "dur"}; }
  std::string describe_loss() const override;
  // An alignment needs a frame per token, and the window needs segment_frames frames.
  ItemProblem check_item(const TrainingItem& item) const override;

 protected:
  ForwardLoss forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) override;
  // The training windows (the decoder trains on windows only), drawn from the evaluation's own stream.
  TrainStepOptions evaluation_options() const override { return options_.step; }
};

// The generator objective called `name` (training_objective_names()), for tools that inspect its forward.
std::unique_ptr<GeneratorTrainer> make_generator_trainer(const std::string& name, VitsModel& model,
                                                         const TrainerOptions& options, uint64_t seed);

LrSchedule make_schedule(const TrainerOptions& options);
// `options` with adam's betas replaced by adam_beta1 / adam_beta2 where those are set (>= 0).
TrainerOptions with_beta_overrides(TrainerOptions options);
// The mel settings VITS uses for a model: n_fft from spectrogram_bins, hop = decoder upsampling,
// n_mels capped at spectrogram_bins / 4 for tiny test models.
MelConfig mel_config_for(const io::VitsConfig& config, int n_mels = 80);

}  // namespace vitscuda::model
