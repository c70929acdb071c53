#include "model/full_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "io/safetensors.h"
#include "kernels/device.h"
#include "model/adversarial_losses.h"

namespace fs = std::filesystem;

namespace vitscuda::model {

namespace {

double host_scalar(const Tensor& t) { return t.to(Device::CPU).data<float>()[0]; }

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  for (const double v : values) sum += v;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

std::string discriminator_file_in(const std::string& model_dir) {
  if (model_dir.empty()) return {};
  const fs::path path = fs::path(model_dir) / kDiscriminatorFileName;
  return fs::exists(path) ? path.string() : std::string();
}

// The discriminator of model_dir's discriminator.safetensors, or one initialised from the run's seed (a stream
// of its own: the generator's draws are not shifted by it). Every parameter trains; it lives on `device`.
std::unique_ptr<Discriminator> load_or_initialize_discriminator(const io::VitsConfig& config,
                                                                const std::string& model_dir, uint64_t seed,
                                                                Device device,
                                                                std::map<std::string, std::string>& metadata) {
  std::unique_ptr<Discriminator> disc;
  const std::string path = discriminator_file_in(model_dir);
  if (!path.empty()) {
    disc = load_discriminator_file(path, config);
    metadata = io::SafetensorsFile::open(path).metadata();
  } else {
    disc = std::make_unique<Discriminator>(config);
    disc->initialize(seed ^ 0xd15c0000d15cULL);
  }
  disc->params().enable_grad([](const std::string&) { return true; });
  disc->to(device);
  return disc;
}

// finetune-hf-vits' betas for both optimisers (its configs' adam_beta1, adam_beta2), unless overridden.
TrainerOptions with_full_betas(TrainerOptions options) {
  options.adam.beta1 = 0.8;
  options.adam.beta2 = 0.99;
  return options;
}

TrainerOptions with_learning_rate(TrainerOptions options, double learning_rate) {
  if (learning_rate > 0) options.learning_rate = learning_rate;
  return options;
}

}  // namespace

Tensor target_waveform_windows(const std::vector<TrainingItem>& batch, const std::vector<int64_t>& starts,
                               int64_t frames, int64_t hop, Device device) {
  VC_CHECK(starts.size() == batch.size(),
           "target windows: " << starts.size() << " window starts for " << batch.size() << " items");
  const int64_t n = frames * hop;
  Tensor windows = Tensor::zeros({static_cast<int64_t>(batch.size()), 1, n});
  float* out = windows.data<float>();
  for (size_t b = 0; b < batch.size(); ++b) {
    const std::vector<float>& wave = batch[b].wave;
    const int64_t first = starts[b] * hop;
    const int64_t available = std::max<int64_t>(0, std::min<int64_t>(n, static_cast<int64_t>(wave.size()) - first));
    std::copy(wave.begin() + first, wave.begin() + first + available, out + static_cast<int64_t>(b) * n);
  }
  return windows.to(device);
}

GeneratorAdversarialTerms generator_adversarial_terms(const Discriminator& disc, const Tensor& real,
                                                      const Tensor& fake) {
  DiscriminatorOutput on_real;
  {
    autograd::NoGradScope no_grad;  // the recordings' feature maps are constants of the generator's loss
    on_real = disc.forward(real);
  }
  const DiscriminatorOutput on_fake = disc.forward(fake);
  return {generator_adversarial_loss(on_fake.scores).loss,
          feature_matching_loss(on_real.feature_maps, on_fake.feature_maps).loss};
}

FullTrainer::FullTrainer(VitsModel& model, MelSpectrogram mel, TrainerOptions options, uint64_t seed)
    : VaeTrainer(model, std::move(mel), with_full_betas(options), seed),
      disc_(load_or_initialize_discriminator(model.config(), options.model_dir, seed, model.params().device(),
                                             disc_metadata_)),
      disc_optimizer_(disc_->params().flat_numel(), options_.adam,
                      adam_ranges_for(disc_->params(), [](const std::string&) { return true; },
                                      options_.adam.weight_decay),
                      DType::F32, disc_->device()),
      disc_schedule_(make_schedule(with_learning_rate(options, options.disc_learning_rate))) {
  discriminator_loaded_ = !discriminator_file_in(options.model_dir).empty();
  disc_warmup_steps_ = options.disc_warmup_steps >= 0 ? options.disc_warmup_steps
                                                      : (discriminator_loaded_ ? 0 : kDefaultFreshDiscriminatorWarmup);
}

std::string FullTrainer::describe_loss() const {
  const TrainStepOptions& s = options_.step;
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "%g * mel + %g * kl + %g * dur + %g * gen + %g * fm (--c-mel, --c-kl, --c-dur, --c-gen, --c-fm; "
                "mel = log-mel L1 of a %d-frame window); discriminator: %g * disc (--c-disc), %d sub-discriminators, "
                "%lld parameters, %s; adversarial terms reach the generator after %lld discriminator warm-up "
                "steps (--disc-warmup-steps)",
                s.c_mel, s.c_kl, s.c_dur, s.c_gen, s.c_fm, s.segment_frames, s.c_disc, disc_->num_discriminators(),
                static_cast<long long>(disc_->params().count()),
                discriminator_loaded_ ? ("read from " + options_.model_dir + "/" + kDiscriminatorFileName).c_str()
                                      : "initialised (the model directory has no discriminator.safetensors)",
                static_cast<long long>(disc_warmup_steps_));
  return buf;
}

std::string FullTrainer::describe_schedule() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "; both AdamW betas (%g, %g), weight decay %g, gradient norm clipped at %g",
                options_.adam.beta1, options_.adam.beta2, options_.adam.weight_decay, options_.grad_clip);
  return "generator: " + schedule().describe() + "; discriminator: " + disc_schedule_.describe() + buf;
}

ForwardLoss FullTrainer::forward(const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng) {
  const VaeStepResult r = vae_training_forward(model_, mel_, batch, options, rng);
  const Tensor real = target_waveform_windows(batch, r.segment_starts, options.segment_frames, mel_.hop(),
                                              model_.params().device());
  const GeneratorAdversarialTerms adv = generator_adversarial_terms(*disc_, real, r.waveform);
  const Tensor total = ops::add(r.total, ops::add(ops::scale(adv.adversarial, options.c_gen),
                                                  ops::scale(adv.feature_matching, options.c_fm)));
  return {total,
          {{"mel", r.mel}, {"kl", r.kl}, {"dur", r.duration}, {"gen", adv.adversarial}, {"fm", adv.feature_matching}},
          r.generated_logmel,
          r.target_logmel,
          r.frames};
}

StepStats FullTrainer::step(const std::vector<std::vector<TrainingItem>>& micro_batches, int64_t epoch) {
  VC_CHECK(!micro_batches.empty(), "training step without data");
  const auto t0 = std::chrono::steady_clock::now();
  reset_cpu_peak_memory();
  const bool on_device = model_.device() == Device::CUDA;
  if (on_device) DeviceAllocator::instance().reset_peak();
  ParameterStore& generator = model_.params();
  ParameterStore& discriminator = disc_->params();
  const TrainStepOptions& opt = options_.step;
  const double weight = 1.0 / static_cast<double>(micro_batches.size());
  const bool warming_up = disc_optimizer_.step_count() < disc_warmup_steps_;
  const bool poisoned = poison_next_;
  poison_next_ = false;

  // The generator's forwards, each on its own tape until the generator's backward below.
  struct Pending {
    std::unique_ptr<autograd::Tape> tape;
    VaeStepResult vae;
    Tensor real;
  };
  std::vector<Pending> pending;
  for (const auto& batch : micro_batches) {
    Pending p;
    p.tape = std::make_unique<autograd::Tape>();
    {
      autograd::RecordingScope recording(*p.tape);
      p.vae = vae_training_forward(model_, mel_, batch, opt, rng());
    }
    p.real = target_waveform_windows(batch, p.vae.segment_starts, opt.segment_frames, mel_.hop(), generator.device());
    pending.push_back(std::move(p));
  }

  StepStats stats;
  double disc_loss = 0, disc_real = 0, disc_fake = 0;
  // D step: its gradients zeroed first, so they hold this step's c_disc * L_D only.
  discriminator.zero_grad();
  for (Pending& p : pending) {
    autograd::Tape tape;
    Tensor loss;
    {
      autograd::RecordingScope recording(tape);
      const DiscriminatorOutput on_real = disc_->forward(p.real);
      const DiscriminatorOutput on_fake = disc_->forward(p.vae.waveform.detach());
      const AdversarialLoss l = discriminator_loss(on_real.scores, on_fake.scores);
      const double value = poisoned ? std::nan("") : host_scalar(l.loss);
      disc_loss += value * weight;
      disc_real += mean_of(mean_scores(on_real.scores)) * weight;
      disc_fake += mean_of(mean_scores(on_fake.scores)) * weight;
      if (!std::isfinite(value)) stats.finite = false;
      loss = ops::scale(l.loss, opt.c_disc * weight);
    }
    if (stats.finite) tape.backward(loss);
  }
  double disc_norm = 0;
  if (stats.finite) {
    disc_norm = global_norm(discriminator.grads());
    stats.finite = std::isfinite(disc_norm);
  }
  if (stats.finite) {
    // A non-finite discriminator loss or gradient skips the whole update (the generator's too).
    const double clip = options_.grad_clip > 0 ? clip_coefficient(disc_norm, options_.grad_clip) : 1.0;
    disc_optimizer_.step(discriminator.flat(), discriminator.grads(),
                         disc_schedule_.lr_at(disc_optimizer_.step_count(), epoch), 1.0, clip);
  }

  // G step against the updated discriminator.
  generator.zero_grad();
  std::vector<double> terms(5, 0.0);  // mel, kl, dur, gen, fm
  for (Pending& p : pending) {
    Tensor loss;
    {
      autograd::RecordingScope recording(*p.tape);
      Tensor total = p.vae.total;
      GeneratorAdversarialTerms adv;
      if (warming_up) {
        autograd::NoGradScope no_grad;  // logged only: the discriminator is still warming up
        adv = generator_adversarial_terms(*disc_, p.real, p.vae.waveform.detach());
      } else {
        adv = generator_adversarial_terms(*disc_, p.real, p.vae.waveform);
        total = ops::add(total, ops::add(ops::scale(adv.adversarial, opt.c_gen),
                                         ops::scale(adv.feature_matching, opt.c_fm)));
      }
      const double value = poisoned ? std::nan("") : host_scalar(total);
      stats.loss += value * weight;
      if (!std::isfinite(value)) stats.finite = false;
      const Tensor parts[] = {p.vae.mel, p.vae.kl, p.vae.duration, adv.adversarial, adv.feature_matching};
      for (size_t i = 0; i < terms.size(); ++i) terms[i] += host_scalar(parts[i]) * weight;
      loss = ops::scale(total, weight);
    }
    if (stats.finite) p.tape->backward(loss);
    p.tape.reset();  // the micro-batch's activations are released here
    stats.items += static_cast<int64_t>(p.real.dim(0));
  }
  stats.learning_rate = schedule().lr_at(optimizer().step_count(), epoch);
  if (stats.finite) {
    stats.grad_norm = global_norm(generator.grads());
    stats.finite = std::isfinite(stats.grad_norm);
  }
  if (stats.finite) {
    const double clip = options_.grad_clip > 0 ? clip_coefficient(stats.grad_norm, options_.grad_clip) : 1.0;
    optimizer().step(generator.flat(), generator.grads(), stats.learning_rate, 1.0, clip);
  }
  // D's gradients now hold the generator backward's contribution: discarded by the next D step's zeroing.
  const char* names[] = {"mel", "kl", "dur", "gen", "fm"};
  for (size_t i = 0; i < terms.size(); ++i) stats.terms.push_back({names[i], terms[i]});
  stats.terms.push_back({"disc", disc_loss});
  stats.terms.push_back({"disc_real", disc_real});
  stats.terms.push_back({"disc_fake", disc_fake});
  if (on_device) kernels::device_synchronize();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats.peak_bytes = on_device ? DeviceAllocator::instance().stats().peak_live_bytes : cpu_memory_stats().peak_bytes;
  return stats;
}

LossValues FullTrainer::evaluate(const std::vector<TrainingItem>& batch) {
  autograd::NoGradScope no_grad;
  Rng eval_rng(rng().seed() ^ 0x5eed5eedULL);  // evaluation draws never disturb the training stream
  const TrainStepOptions opt = evaluation_options();
  const VaeStepResult r = vae_training_forward(model_, mel_, batch, opt, eval_rng);
  const Tensor real = target_waveform_windows(batch, r.segment_starts, opt.segment_frames, mel_.hop(),
                                              model_.params().device());
  const DiscriminatorOutput on_real = disc_->forward(real);
  const DiscriminatorOutput on_fake = disc_->forward(r.waveform);
  const double adversarial = host_scalar(generator_adversarial_loss(on_fake.scores).loss);
  const double feature_matching = host_scalar(feature_matching_loss(on_real.feature_maps, on_fake.feature_maps).loss);
  LossValues v;
  const bool warming_up = disc_optimizer_.step_count() < disc_warmup_steps_;
  v.total = host_scalar(r.total) + (warming_up ? 0.0 : opt.c_gen * adversarial + opt.c_fm * feature_matching);
  v.terms = {{"mel", host_scalar(r.mel)},
             {"kl", host_scalar(r.kl)},
             {"dur", host_scalar(r.duration)},
             {"gen", adversarial},
             {"fm", feature_matching},
             {"disc", host_scalar(discriminator_loss(on_real.scores, on_fake.scores).loss)},
             {"disc_real", mean_of(mean_scores(on_real.scores))},
             {"disc_fake", mean_of(mean_scores(on_fake.scores))}};
  return v;
}

void FullTrainer::save_model_files(const std::string& dir) {
  // Written from a host copy (the file writer reads host memory).
  Discriminator host(disc_->config());
  host.params().flat().copy_from(disc_->params().flat());
  save_discriminator_file((fs::path(dir) / kDiscriminatorFileName).string(), host, disc_metadata_);
}

void FullTrainer::save_state(io::CheckpointWriter& checkpoint) {
  GeneratorTrainer::save_state(checkpoint);
  Discriminator host(disc_->config());
  host.params().flat().copy_from(disc_->params().flat());
  save_discriminator_file(checkpoint.path_for(kDiscriminatorFileName), host, disc_metadata_);
  checkpoint.add_file(kDiscriminatorFileName);
  io::write_optimizer_state(checkpoint.path_for(kDiscriminatorOptimizerFileName), disc_optimizer_);
  checkpoint.add_file(kDiscriminatorOptimizerFileName);
}

void FullTrainer::load_state(const io::CheckpointInfo& checkpoint) {
  GeneratorTrainer::load_state(checkpoint);
  const std::string disc_path = checkpoint.path_of(kDiscriminatorFileName);
  VC_CHECK(fs::exists(disc_path), "--resume: the checkpoint " << checkpoint.path << " has no " << kDiscriminatorFileName
                                                              << ": it was not made by the full objective");
  const std::unique_ptr<Discriminator> loaded = load_discriminator_file(disc_path, disc_->config());
  disc_->params().flat().copy_from(loaded->params().flat());
  disc_metadata_ = io::SafetensorsFile::open(disc_path).metadata();
  io::load_optimizer_state(checkpoint.path_of(kDiscriminatorOptimizerFileName), disc_optimizer_, &disc_->params());
}

}  // namespace vitscuda::model
