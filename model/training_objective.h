// What one training update optimises. The training loop (TrainingRun) drives any objective through
// this interface: the objective owns the parameters it trains, its optimiser(s), its random stream
// and the names of its loss terms; the loop owns the data, the failure policy, logging, evaluation
// and checkpoints, and never knows which objective it runs.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/optimizer.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "model/vits.h"

namespace vitscuda::model {

struct TrainingItem {
  std::vector<int32_t> ids;   // token ids (with blanks)
  std::vector<float> wave;    // target audio at the model's sampling rate
  Tensor target_logmel;       // [n_mels, frames]: log-mel of the whole target (undefined: computed here)
  int speaker_id = -1;
};
// A prepared cache item as a training item (ids, waveform, speaker).
TrainingItem training_item_of(io::DatasetItem&& item);  // takes only ids and samples from it

// One named part of an objective's loss, e.g. {"mel", 0.42}.
struct LossTerm {
  std::string name;
  double value = 0;
};

// The loss of one update or evaluation: `total` is what the optimiser minimises (the sum of the
// terms, each with its weight), `terms` its parts in the order of TrainingObjective::loss_terms().
struct LossValues {
  double total = 0;
  std::vector<LossTerm> terms;
};

struct StepStats {
  double loss = 0;         // the total, mean over the micro-batches
  std::vector<LossTerm> terms;  // the named parts of `loss`, mean over the micro-batches
  double grad_norm = 0;    // before clipping
  double learning_rate = 0;
  double seconds = 0;
  size_t peak_bytes = 0;   // tensor memory high-water mark during the update (the device's on CUDA)
  int64_t items = 0;
  bool finite = true;      // false: loss or gradients were not finite; the update was skipped
};

// Settings every objective takes: the optimiser's schedule and clipping, and the forward's sampling.
struct TrainStepOptions {
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  int segment_frames = 0;  // 0: decode the whole utterance
  bool recompute_decoder = false;  // recompute HiFi-GAN residual blocks in the backward (less memory)
  // Fixed draws instead of the RNG (tests): duration noise [B,2,T], prior noise [B,F,frames], posterior
  // noise [B,F,frames] (vae), segment starts.
  Tensor duration_noise;
  Tensor prior_noise;
  Tensor posterior_noise;
  std::vector<int64_t> segment_starts;
  // The vae objective's loss weights (finetune-hf-vits' defaults).
  double c_mel = 35.0;
  double c_kl = 1.5;
  double c_dur = 1.0;
  // The full objective's: weights of L_adv and L_fm in the generator's loss, of L_D in the discriminator's
  // backward (finetune-hf-vits' weight_gen, weight_fmaps, weight_disc).
  double c_gen = 1.0;
  double c_fm = 1.0;
  double c_disc = 3.0;
};

struct TrainerOptions {
  double learning_rate = 2e-4;
  int64_t warmup_steps = 0;
  double lr_decay = 1.0;  // per epoch (VITS: 0.999875); 1 = constant
  AdamWConfig adam;       // torch.optim.AdamW defaults
  double grad_clip = 1.0;  // max gradient L2 norm; 0 disables clipping
  TrainStepOptions step;
  // The model directory the run starts from: where an objective finds state it owns beyond the generator's
  // weights (the full objective's discriminator.safetensors). Empty: none.
  std::string model_dir;
  // The full objective's discriminator: its learning rate (0: learning_rate; the same schedule) and the
  // discriminator updates before its gradients reach the generator (-1: 0 for a discriminator read from
  // model_dir, kDefaultFreshDiscriminatorWarmup for a freshly initialised one).
  double disc_learning_rate = 0;
  int64_t disc_warmup_steps = -1;
  // Overrides of adam's betas (every optimiser of the objective); -1: the objective's own (full: finetune-hf-vits'
  // 0.8, 0.99; vae, mel: adam's).
  double adam_beta1 = -1;
  double adam_beta2 = -1;
};

// Why an objective cannot train on an item: a stable reason name and its detail (empty reason: usable).
struct ItemProblem {
  std::string reason, detail;
};

class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;

  // The name it is selected by (make_training_objective).
  virtual std::string name() const = 0;
  // Names of the loss terms, in the order StepStats::terms and LossValues::terms report them.
  virtual std::vector<std::string> loss_terms() const = 0;
  // The learning-rate schedule in words, for the run's opening line.
  virtual std::string describe_schedule() const = 0;
  // What the optimiser minimises, in words with the loss weights, for the run's opening lines.
  virtual std::string describe_loss() const = 0;

  // One update from `micro_batches` (each a batch; losses averaged). A non-finite loss or gradient
  // skips the update and is reported in the stats, never applied.
  virtual StepStats step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) = 0;
  // Checks an item against what this objective needs (the loop has already checked tokens, audio and
  // speaker); the loop records a refused item as a failed sample under the reason.
  virtual ItemProblem check_item(const TrainingItem&) const { return {}; }
  // Test hook for the failure policy: the next step's loss is replaced by NaN (its update is skipped).
  virtual void poison_next_step() = 0;
  // Loss without gradients (evaluation); never disturbs the training random stream.
  virtual LossValues evaluate(const std::vector<TrainingItem>& batch) = 0;

  // Checkpoints: the objective's own state (optimiser moments, parameters it owns beyond the model's)
  // written into / restored from a checkpoint directory. The model's parameters are the run's.
  virtual void save_state(io::CheckpointWriter& checkpoint) = 0;
  virtual void load_state(const io::CheckpointInfo& checkpoint) = 0;
  // Files the objective adds to the run's final model directory (the generator's are the run's), so that
  // directory continues training with this objective. Most objectives own none.
  virtual void save_model_files(const std::string& dir) { (void)dir; }
  // Position of its random stream (Philox words consumed), kept in trainer_state.json for a resume.
  virtual uint64_t rng_offset() const = 0;
  virtual void set_rng_offset(uint64_t offset) = 0;
};

// Builds an objective for `model` (on the model's device); each takes its random draws from `seed`.
using TrainingObjectiveFactory =
    std::function<std::unique_ptr<TrainingObjective>(VitsModel& model, const TrainerOptions& options, uint64_t seed)>;

// The objectives selectable by name, in the order they are listed to users.
std::vector<std::string> training_objective_names();
// `name` when it names an objective; otherwise an error listing the valid names.
const std::string& require_training_objective_name(const std::string& name);
// The objective called `name` (checked as above).
std::unique_ptr<TrainingObjective> make_training_objective(const std::string& name, VitsModel& model,
                                                           const TrainerOptions& options, uint64_t seed);

}  // namespace vitscuda::model
