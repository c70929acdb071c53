#include "model/vae_step.h"

#include <algorithm>
#include <numeric>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "model/alignment.h"
#include "model/duration_predictor.h"
#include "model/flow.h"
#include "model/hifigan.h"
#include "model/posterior_encoder.h"
#include "model/text_encoder.h"

namespace vitscuda::model {

bool trainable_in_vae_mode(const std::string& name) {
  for (const char* prefix :
       {"text_encoder.", "duration_predictor.", "flow.", "posterior_encoder.", "decoder.", "embed_speaker."})
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

namespace {

// A fixed draw from the options (moved to the device, shape checked) or a fresh one from the stream.
Tensor draw_normal(const Tensor& fixed, const Shape& shape, Device dev, Rng& rng, const char* what) {
  if (fixed.defined()) {
    VC_CHECK(fixed.shape() == shape, what << " must be " << shape_str(shape) << ", got " << fixed.describe());
    return fixed.to(dev);
  }
  Tensor t = Tensor::empty(shape, DType::F32, dev);
  rng.fill_normal(t);
  return t;
}

// The targets' linear spectrograms, [B, bins, max_frames] (zero past each item's frames): each computed
// alone, so its reflect padding at the end is its own, as the feature extractor does per utterance.
Tensor spectrogram_batch(const MelSpectrogram& mel, const std::vector<TrainingItem>& batch, const BatchInputs& in) {
  const Device dev = in.frame_mask.device();
  std::vector<Tensor> items;
  for (int64_t b = 0; b < in.batch; ++b) {
    Tensor s = mel.linear_spectrogram_of(batch[b].wave, dev);
    s = s.reshape({1, s.dim(0), s.dim(1)});
    if (in.frames[b] < in.max_frames)
      s = ops::cat({s, Tensor::zeros({1, mel.bins(), in.max_frames - in.frames[b]}, DType::F32, dev)}, 2);
    items.push_back(s);
  }
  return ops::cat(items, 0);
}

// Sum over every element, as a scalar (shape []).
Tensor sum_all(Tensor x) {
  while (x.ndim() > 0) x = ops::sum(x, 0, false);
  return x;
}

}  // namespace

VaeStepResult vae_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                   const std::vector<TrainingItem>& batch, const TrainStepOptions& opt, Rng& rng) {
  const io::VitsConfig& c = model.config();
  const ParameterStore& store = model.params();
  const Device dev = store.device();
  VC_CHECK(mel.hop() == c.total_upsample(),
           "vae step: mel hop " << mel.hop() << " differs from the decoder's upsampling " << c.total_upsample());
  VC_CHECK(mel.bins() == c.spectrogram_bins, "vae step: the STFT gives " << mel.bins() << " bins; the posterior "
                                                 << "encoder takes spectrogram_bins = " << c.spectrogram_bins);
  const int64_t K = opt.segment_frames;
  VC_CHECK(K > 0, "vae step: the decoder trains on windows; segment_frames must be > 0, got " << K);
  const BatchInputs in = batch_inputs_of(model, batch);
  const int64_t B = in.batch, T = in.tokens, F = in.max_frames;
  for (int64_t b = 0; b < B; ++b)
    check_alignable(in.token_lengths[b], in.frames[b], K, "at batch position " + std::to_string(b));

  VaeStepResult r;
  r.frames = in.frames;

  // Text encoder: hidden [B, H, T], prior m_p, logs_p [B, F, T].
  const TextEncoderOutput enc = run_text_encoder(c, store, in.ids, B, T, in.token_mask_btc);
  const Tensor hidden = ops::transpose(enc.hidden, 1, 2);
  const Tensor prior_means = ops::transpose(enc.prior_means, 1, 2);
  const Tensor prior_log_std = ops::transpose(enc.prior_log_std, 1, 2);

  // Posterior on the target's linear spectrogram, then the flow forward.
  const Tensor spectrogram = spectrogram_batch(mel, batch, in);
  const Tensor eps_q = draw_normal(opt.posterior_noise, {B, c.flow_size, F}, dev, rng, "posterior noise");
  const PosteriorOutput post = run_posterior_encoder(c, store, spectrogram, in.frame_mask, in.speaker, eps_q);
  const Tensor z_p = run_flow_forward(c, store, post.sample, in.frame_mask, in.speaker);

  // Alignment (a constant of the step).
  {
    autograd::NoGradScope no_grad;
    const Tensor likelihood = alignment_log_likelihood(z_p.detach(), prior_means.detach(), prior_log_std.detach());
    r.alignment = ops::monotonic_alignment_search(likelihood, in.frames, in.token_lengths);
  }
  const std::vector<std::vector<int32_t>> durations = durations_of_alignment(r.alignment, F, in.token_lengths);
  Tensor duration_frames = Tensor::zeros({B, 1, T});
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < durations[b].size(); ++t)
      duration_frames.data<float>()[b * T + static_cast<int64_t>(t)] = static_cast<float>(durations[b][t]);
  duration_frames = duration_frames.to(dev);

  // Duration loss on the detached text encoding.
  const Tensor eps_dur = c.use_stochastic_duration_prediction
                             ? draw_normal(opt.duration_noise, {B, 2, T}, dev, rng, "duration noise")
                             : Tensor();
  const Tensor per_item = duration_predictor_loss(c, store, hidden.detach(), in.token_mask,
                                                  in.speaker.defined() ? in.speaker.detach() : Tensor(),
                                                  duration_frames, eps_dur);
  const int64_t tokens = std::accumulate(in.token_lengths.begin(), in.token_lengths.end(), int64_t{0});
  r.duration = ops::scale(sum_all(per_item), 1.0 / static_cast<double>(tokens));

  // KL between the posterior and the prior expanded through the alignment.
  const Tensor m_p = ops::gather_frames(prior_means, r.alignment, F);
  const Tensor logs_p = ops::gather_frames(prior_log_std, r.alignment, F);
  const Tensor diff = ops::sub(z_p, m_p);
  Tensor kl = ops::add_scalar(ops::sub(logs_p, post.log_std), -0.5);
  kl = ops::add(kl, ops::scale(ops::mul(ops::mul(diff, diff), ops::exp(ops::scale(logs_p, -2.0))), 0.5));
  const int64_t frames = std::accumulate(in.frames.begin(), in.frames.end(), int64_t{0});
  r.kl = ops::scale(sum_all(ops::mul(kl, in.frame_mask)), 1.0 / static_cast<double>(frames));

  // A window of the posterior sample through the decoder; log-mel L1 against the target's window.
  r.segment_starts = draw_segment_starts(in.frames, K, opt.segment_starts, rng);
  const Tensor window = slice_frames(post.sample, r.segment_starts, K);
  Tensor wave = run_hifigan(c, store, window, in.speaker, opt.recompute_decoder);
  r.waveform = wave.reshape({wave.dim(0), wave.dim(2)});
  r.generated_logmel = mel.log_mel(r.waveform);
  r.target_logmel = slice_frames(target_logmel_batch(mel, batch, in), r.segment_starts, K);
  r.mel = ops::masked_l1_loss(r.generated_logmel, r.target_logmel, Tensor::full({B, 1, K}, 1.0, DType::F32, dev));

  r.total = ops::add(ops::add(ops::scale(r.mel, opt.c_mel), ops::scale(r.kl, opt.c_kl)),
                     ops::scale(r.duration, opt.c_dur));
  return r;
}

}  // namespace vitscuda::model
