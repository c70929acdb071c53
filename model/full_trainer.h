// The "full" objective: VITS with its discriminators, as finetune-hf-vits trains it (run_vits_finetuning.py,
// the training step; docs/full_objective.md sections 1, 3, 5). One update, with the generator's vae forward
// (model/vae_step.h) recorded first:
//   D step: D's gradients zeroed, then D(real) and D(sg(fake)) -> c_disc * L_D, backward, D's gradient norm
//           clipped, D's AdamW step. real = the recordings' samples [start * hop, (start + K) * hop) of the
//           generator's windows (zeros past an item's end, as a padded batch has them).
//   G step: D(real)'s feature maps as constants, D(fake) with gradients (the updated D),
//           L_G = c_mel * mel + c_kl * kl + c_dur * dur + c_gen * L_adv + c_fm * L_fm, backward, the
//           generator's gradient norm clipped, the generator's AdamW step. What this backward leaves in D's
//           gradients is discarded: the next D step zeroes them first (original VITS' order; finetune-hf-vits
//           zeroes them after its D step, so its D gradient also carries the previous G step's, a leak this
//           objective does not reproduce).
// Discriminator warm-up: during the first `disc_warmup_steps` discriminator updates the generator trains the
// vae terms only (L_adv and L_fm are computed for the log but carry no weight), so a freshly initialised
// discriminator learns to tell the recordings apart before its gradients reach the generator.
// With micro-batches (--grad-accum), every micro-batch's generator forward is kept until the D update: memory
// as for one batch of grad_accum * batch_size.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/discriminator.h"
#include "model/trainer.h"
#include "model/vae_step.h"

namespace vitscuda::model {

// The discriminator optimiser's moments in a checkpoint (the generator's: io::kOptimizerFileName).
inline const std::string kDiscriminatorOptimizerFileName = "disc_optimizer.safetensors";
// The warm-up a freshly initialised discriminator gets when the options leave it to the objective.
inline constexpr int64_t kDefaultFreshDiscriminatorWarmup = 200;

// loss terms: "mel", "kl", "dur", "gen" (L_adv), "fm" (L_fm), "disc" (L_D, unweighted, on sg(fake) before
// the D update), "disc_real" / "disc_fake" (D's mean score on the recordings / the generated windows, the mean
// over the sub-discriminators); the total is the generator's weighted loss L_G.
class FullTrainer : public VaeTrainer {
 public:
  static constexpr const char* kName = "full";
  // The discriminator comes from options.model_dir's discriminator.safetensors when there is one; otherwise it
  // is initialised from `seed` (and the warm-up defaults to kDefaultFreshDiscriminatorWarmup).
  FullTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed);

  std::string name() const override { return kName; }
  std::vector<std::string> loss_terms() const override {
    return {"mel", "kl", "dur", "gen", "fm", "disc", "disc_real", "disc_fake"};
  }
  std::string describe_loss() const override;
  std::string describe_schedule() const override;
  StepStats step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) override;
  void poison_next_step() override { poison_next_ = true; }
  // The generator's loss and the discriminator's on sg(fake), no gradients, from the evaluation's own stream.
  LossValues evaluate(const std::vector<TrainingItem>& batch) override;
  // Beside the generator's optimizer.safetensors: discriminator.safetensors and disc_optimizer.safetensors.
  void save_state(io::CheckpointWriter& checkpoint) override;
  void load_state(const io::CheckpointInfo& checkpoint) override;
  // discriminator.safetensors, so the final model directory continues a full run.
  void save_model_files(const std::string& dir) override;

  Discriminator& discriminator() { return *disc_; }
  AdamW& discriminator_optimizer() { return disc_optimizer_; }
  int64_t disc_warmup_steps() const { return disc_warmup_steps_; }
  bool discriminator_loaded() const { return discriminator_loaded_; }

 protected:
  // The generator's loss with the current discriminator fixed: the vae terms and "gen", "fm" (the terms the
  // generator's gradient check and selftest inspect).
  ForwardLoss forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) override;

 private:
  std::map<std::string, std::string> disc_metadata_;  // the loaded file's (source layout, dtypes) for export
  std::unique_ptr<Discriminator> disc_;
  AdamW disc_optimizer_;
  LrSchedule disc_schedule_;
  int64_t disc_warmup_steps_ = 0;
  bool discriminator_loaded_ = false;
  bool poison_next_ = false;
};

// The recordings' windows the discriminator judges: item b's samples [starts[b] * hop, (starts[b] + K) * hop)
// (zeros past its end), as [B, 1, K * hop] on `device`.
Tensor target_waveform_windows(const std::vector<TrainingItem>& batch, const std::vector<int64_t>& starts,
                               int64_t frames, int64_t hop, Device device);

// The generator's adversarial terms against `disc`: D(real) under no gradient (constants), D(fake) recorded on
// the current tape when one records.
struct GeneratorAdversarialTerms {
  Tensor adversarial, feature_matching;  // scalars
};
GeneratorAdversarialTerms generator_adversarial_terms(const Discriminator& disc, const Tensor& real,
                                                      const Tensor& fake);

}  // namespace vitscuda::model
