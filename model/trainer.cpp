#include "model/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "kernels/device.h"

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
std::vector<kernels::AdamRange> trainable_ranges(VitsModel& model, const AdamWConfig& adam) {
  if (!model.params().grad_enabled()) model.params().enable_grad(trainable_in_mel_mode);
  return adam_ranges_for(model.params(), [](const std::string&) { return true; }, adam.weight_decay);
}
}  // namespace

MelTrainer::MelTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed)
    : model_(model),
      mel_(std::move(mel)),
      options_(options),
      optimizer_(model.params().flat_numel(), options.adam, trainable_ranges(model, options.adam), DType::F32,
                 model.params().device()),
      schedule_(make_schedule(options)),
      rng_(seed) {}

StepStats MelTrainer::step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) {
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
    TrainStepResult r;
    {
      autograd::RecordingScope recording(tape);
      r = mel_training_forward(model_, mel_, batch, options_.step, rng_);
      const double loss = poison_next_ ? std::nan("") : r.loss.to(Device::CPU).data<float>()[0];
      stats.loss += loss * weight;
      if (!std::isfinite(loss)) stats.finite = false;
      r.loss = ops::scale(r.loss, weight);  // averaged over micro-batches
    }
    if (stats.finite) tape.backward(r.loss);
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
  stats.terms = {{"mel", stats.loss}};
  return stats;
}

LossValues MelTrainer::evaluate(const std::vector<TrainingItem>& batch) {
  autograd::NoGradScope no_grad;
  Rng eval_rng(rng_.seed() ^ 0x5eed5eedULL);  // evaluation draws never disturb the training stream
  TrainStepOptions eval_options = options_.step;
  eval_options.segment_frames = 0;
  const double loss =
      mel_training_forward(model_, mel_, batch, eval_options, eval_rng).loss.to(Device::CPU).data<float>()[0];
  return {loss, {{"mel", loss}}};
}

void MelTrainer::save_state(io::CheckpointWriter& checkpoint) {
  io::write_optimizer_state(checkpoint.path_for(io::kOptimizerFileName), optimizer_);
  checkpoint.add_file(io::kOptimizerFileName);
}

void MelTrainer::load_state(const io::CheckpointInfo& checkpoint) {
  io::load_optimizer_state(checkpoint.path_of(io::kOptimizerFileName), optimizer_, &model_.params());
}

}  // namespace vitscuda::model
