#include "model/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "kernels/device.h"
#include "model/alignment.h"
#include "model/full_trainer.h"
#include "model/vae_step.h"

namespace vitscuda::model {

LrSchedule make_schedule(const TrainerOptions& o) {
  const bool decays = o.lr_decay != 1.0;
  if (o.warmup_steps > 0)
    return decays ? LrSchedule::warmup_exponential(o.learning_rate, o.warmup_steps, o.lr_decay)
                  : LrSchedule::warmup_constant(o.learning_rate, o.warmup_steps);
  return decays ? LrSchedule::exponential(o.learning_rate, o.lr_decay) : LrSchedule::constant(o.learning_rate);
}

MelConfig mel_config_for(const io::VitsConfig& c, int n_mels) {
  MelConfig m;
  m.sample_rate = c.sampling_rate;
  m.n_fft = 2 * (c.spectrogram_bins - 1);
  m.win = m.n_fft;
  m.hop = c.total_upsample();
  // Small test models have few frequency bins: keep about 4 bins per mel band at most.
  m.n_mels = std::min(n_mels, std::max(1, c.spectrogram_bins / 4));
  return m;
}

namespace {
std::vector<kernels::AdamRange> trainable_ranges(VitsModel& model, const AdamWConfig& adam,
                                                 bool (*trainable)(const std::string&)) {
  if (!model.params().grad_enabled()) model.params().enable_grad(trainable);
  return adam_ranges_for(model.params(), [](const std::string&) { return true; }, adam.weight_decay);
}

double host_scalar(const Tensor& t) { return t.to(Device::CPU).data<float>()[0]; }
}  // namespace

TrainerOptions with_beta_overrides(TrainerOptions options) {
  if (options.adam_beta1 >= 0) options.adam.beta1 = options.adam_beta1;
  if (options.adam_beta2 >= 0) options.adam.beta2 = options.adam_beta2;
  return options;
}

GeneratorTrainer::GeneratorTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed,
                                   bool (*trainable)(const std::string&))
    : model_(model),
      mel_(std::move(mel)),
      options_(with_beta_overrides(options)),
      optimizer_(model.params().flat_numel(), options_.adam, trainable_ranges(model, options.adam, trainable),
                 DType::F32, model.params().device()),
      schedule_(make_schedule(options)),
      rng_(seed) {}

StepStats GeneratorTrainer::step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) {
  VC_CHECK(!micro_batches.empty(), "training step without data");
  const auto t0 = std::chrono::steady_clock::now();
  reset_cpu_peak_memory();
  const bool on_device = model_.device() == Device::CUDA;
  if (on_device) DeviceAllocator::instance().reset_peak();
  ParameterStore& store = model_.params();
  store.zero_grad();
  StepStats stats;
  const double weight = 1.0 / static_cast<double>(micro_batches.size());
  for (const auto& batch : micro_batches) {
    autograd::Tape tape;
    Tensor loss;
    {
      autograd::RecordingScope recording(tape);
      ForwardLoss f = forward(batch, options_.step, rng_);
      const double total = poison_next_ ? std::nan("") : host_scalar(f.total);
      stats.loss += total * weight;
      if (!std::isfinite(total)) stats.finite = false;
      if (stats.terms.empty())
        for (const auto& term : f.terms) stats.terms.push_back({term.first, 0.0});
      for (size_t i = 0; i < f.terms.size(); ++i)
        stats.terms[i].value += (poison_next_ ? std::nan("") : host_scalar(f.terms[i].second)) * weight;
      loss = ops::scale(f.total, weight);  // averaged over micro-batches
    }
    if (stats.finite) tape.backward(loss);
    stats.items += static_cast<int64_t>(batch.size());
  }
  poison_next_ = false;
  stats.learning_rate = schedule_.lr_at(optimizer_.step_count(), epoch);
  if (stats.finite) {
    stats.grad_norm = global_norm(store.grads());
    stats.finite = std::isfinite(stats.grad_norm);
  }
  if (stats.finite) {
    const double clip = options_.grad_clip > 0 ? clip_coefficient(stats.grad_norm, options_.grad_clip) : 1.0;
    optimizer_.step(store.flat(), store.grads(), stats.learning_rate, 1.0, clip);
  }
  // The update is queued on the device: wait for it, so the step's time includes it.
  if (on_device) kernels::device_synchronize();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats.peak_bytes = on_device ? DeviceAllocator::instance().stats().peak_live_bytes : cpu_memory_stats().peak_bytes;
  return stats;
}

LossValues GeneratorTrainer::evaluate(const std::vector<TrainingItem>& batch) {
  autograd::NoGradScope no_grad;
  Rng eval_rng(rng_.seed() ^ 0x5eed5eedULL);  // evaluation draws never disturb the training stream
  const ForwardLoss f = forward(batch, evaluation_options(), eval_rng);
  LossValues v;
  v.total = host_scalar(f.total);
  for (const auto& term : f.terms) v.terms.push_back({term.first, host_scalar(term.second)});
  return v;
}

void GeneratorTrainer::save_state(io::CheckpointWriter& checkpoint) {
  io::write_optimizer_state(checkpoint.path_for(io::kOptimizerFileName), optimizer_);
  checkpoint.add_file(io::kOptimizerFileName);
}

void GeneratorTrainer::load_state(const io::CheckpointInfo& checkpoint) {
  io::load_optimizer_state(checkpoint.path_of(io::kOptimizerFileName), optimizer_, &model_.params());
}

MelTrainer::MelTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed)
    : GeneratorTrainer(model, std::move(mel), options, seed, trainable_in_mel_mode) {}

ForwardLoss MelTrainer::forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) {
  TrainStepResult r = mel_training_forward(model_, mel_, batch, options, rng);
  return {r.loss, {{"mel", r.loss}}, r.generated_logmel, r.target_logmel, r.frames};
}

TrainStepOptions MelTrainer::evaluation_options() const {
  TrainStepOptions o = options_.step;
  o.segment_frames = 0;
  return o;
}

std::string MelTrainer::describe_loss() const {
  return "mel = log-mel L1 of the decoded prior sample (durations from the frozen duration predictor)";
}

std::string VaeTrainer::describe_loss() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%g * mel + %g * kl + %g * dur (--c-mel, --c-kl, --c-dur; mel = log-mel L1 of a %d-frame window)",
                options_.step.c_mel, options_.step.c_kl, options_.step.c_dur, options_.step.segment_frames);
  return buf;
}

ItemProblem VaeTrainer::check_item(const TrainingItem& item) const {
  const int64_t frames = static_cast<int64_t>(item.wave.size()) / model_.config().total_upsample();
  const AlignabilityProblem p =
      alignability_problem(static_cast<int64_t>(item.ids.size()), frames, options_.step.segment_frames);
  return {p.reason, p.detail};
}

VaeTrainer::VaeTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed)
    : GeneratorTrainer(model, std::move(mel), options, seed, trainable_in_vae_mode) {}

ForwardLoss VaeTrainer::forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) {
  VaeStepResult r = vae_training_forward(model_, mel_, batch, options, rng);
  return {r.total, {{"mel", r.mel}, {"kl", r.kl}, {"dur", r.duration}}, r.generated_logmel, r.target_logmel, r.frames};
}

std::unique_ptr<GeneratorTrainer> make_generator_trainer(const std::string& name, VitsModel& model,
                                                         const TrainerOptions& options, uint64_t seed) {
  require_training_objective_name(name);
  MelSpectrogram mel(mel_config_for(model.config()));
  if (name == FullTrainer::kName) return std::make_unique<FullTrainer>(model, std::move(mel), options, seed);
  if (name == VaeTrainer::kName) return std::make_unique<VaeTrainer>(model, std::move(mel), options, seed);
  return std::make_unique<MelTrainer>(model, std::move(mel), options, seed);
}

}  // namespace vitscuda::model
