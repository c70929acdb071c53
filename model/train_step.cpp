#include "model/train_step.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "model/alignment.h"
#include "model/duration_predictor.h"
#include "model/flow.h"
#include "model/hifigan.h"
#include "model/text_encoder.h"

namespace vitscuda::model {

bool trainable_in_mel_mode(const std::string& name) {
  for (const char* prefix : {"text_encoder.", "flow.", "decoder.", "embed_speaker."})
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

BatchInputs batch_inputs_of(const VitsModel& model, const std::vector<TrainingItem>& batch) {
  const io::VitsConfig& c = model.config();
  const ParameterStore& store = model.params();
  VC_CHECK(!batch.empty(), "training step: empty batch");
  const int64_t hop = c.total_upsample();
  const Device dev = store.device();  // inputs are built on the host, then moved there
  BatchInputs in;
  in.batch = static_cast<int64_t>(batch.size());
  const int64_t B = in.batch;
  for (int64_t b = 0; b < B; ++b) {
    const TrainingItem& item = batch[b];
    VC_CHECK(!item.ids.empty(), "training item " << b << " has no tokens");
    const int64_t frames = static_cast<int64_t>(item.wave.size()) / hop;
    VC_CHECK(frames >= 1, "training item " << b << " has " << item.wave.size() << " samples, fewer than one frame ("
                                           << hop << " samples)");
    in.frames.push_back(frames);
    in.token_lengths.push_back(static_cast<int64_t>(item.ids.size()));
    in.tokens = std::max<int64_t>(in.tokens, static_cast<int64_t>(item.ids.size()));
  }
  const int64_t T = in.tokens;
  in.max_frames = *std::max_element(in.frames.begin(), in.frames.end());

  in.ids.assign(static_cast<size_t>(B * T), std::max(c.pad_token_id, 0));
  Tensor mask_btc = Tensor::zeros({B, T, 1});
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < batch[b].ids.size(); ++t) {
      in.ids[b * T + t] = batch[b].ids[t];
      mask_btc.data<float>()[b * T + t] = 1.0f;
    }
  in.token_mask_btc = mask_btc.to(dev);
  in.token_mask = ops::transpose(in.token_mask_btc, 1, 2);
  Tensor frame_mask = Tensor::zeros({B, 1, in.max_frames});
  for (int64_t b = 0; b < B; ++b)
    std::fill(frame_mask.data<float>() + b * in.max_frames,
              frame_mask.data<float>() + b * in.max_frames + in.frames[b], 1.0f);
  in.frame_mask = frame_mask.to(dev);
  if (c.num_speakers > 1) {
    std::vector<int32_t> sid;
    for (const TrainingItem& item : batch) {
      VC_CHECK(item.speaker_id >= 0 && item.speaker_id < c.num_speakers,
               "training item has speaker id " << item.speaker_id << "; the model has " << c.num_speakers << " speakers");
      sid.push_back(item.speaker_id);
    }
    in.speaker = ops::transpose(ops::embedding(store.get("embed_speaker.weight"), sid, B, 1), 1, 2);
  }
  return in;
}

Tensor target_logmel_batch(const MelSpectrogram& mel, const std::vector<TrainingItem>& batch, const BatchInputs& in) {
  const Device dev = in.frame_mask.device();
  Tensor target = Tensor::zeros({in.batch, mel.n_mels(), in.max_frames});
  for (int64_t b = 0; b < in.batch; ++b) {
    const Tensor t = (batch[b].target_logmel.defined() ? batch[b].target_logmel : mel.log_mel_of(batch[b].wave, dev))
                         .to(Device::CPU);
    VC_CHECK(t.dim(0) == mel.n_mels() && t.dim(1) == in.frames[b],
             "target log-mel of item " << b << " is " << t.describe() << ", expected [" << mel.n_mels() << ", "
                                       << in.frames[b] << "]");
    for (int64_t k = 0; k < mel.n_mels(); ++k)
      std::copy(t.data<float>() + k * in.frames[b], t.data<float>() + (k + 1) * in.frames[b],
                target.data<float>() + (b * mel.n_mels() + k) * in.max_frames);
  }
  return target.to(dev);
}

std::vector<int64_t> draw_segment_starts(const std::vector<int64_t>& frames, int64_t K,
                                         const std::vector<int64_t>& starts, Rng& rng) {
  const int64_t B = static_cast<int64_t>(frames.size());
  VC_CHECK(starts.empty() || static_cast<int64_t>(starts.size()) == B, "segment_starts needs one start per item");
  std::vector<int64_t> out;
  for (int64_t b = 0; b < B; ++b) {
    int64_t start;
    if (!starts.empty()) {
      start = starts[b];
    } else {
      start = static_cast<int64_t>(rng.uniform() * static_cast<double>(frames[b] - K + 1));
      start = std::min(start, frames[b] - K);
    }
    VC_CHECK(start >= 0 && start + K <= frames[b],
             "segment start " << start << " of item " << b << " out of range (" << frames[b] << " frames, window "
                              << K << ")");
    out.push_back(start);
  }
  return out;
}

Tensor slice_frames(const Tensor& x, const std::vector<int64_t>& starts, int64_t K) {
  std::vector<int32_t> index;
  index.reserve(starts.size() * static_cast<size_t>(K));
  for (int64_t start : starts)
    for (int64_t k = 0; k < K; ++k) index.push_back(static_cast<int32_t>(start + k));
  return ops::gather_frames(x, index, K);
}

TrainStepResult mel_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                     const std::vector<TrainingItem>& batch, const TrainStepOptions& opt, Rng& rng) {
  const io::VitsConfig& c = model.config();
  const ParameterStore& store = model.params();
  const Device dev = store.device();
  VC_CHECK(mel.hop() == c.total_upsample(),
           "training step: mel hop " << mel.hop() << " differs from the decoder's upsampling " << c.total_upsample());
  const BatchInputs in = batch_inputs_of(model, batch);
  const int64_t B = in.batch, T = in.tokens, max_frames = in.max_frames;
  const Tensor& speaker = in.speaker;
  const Tensor& mask = in.token_mask;
  const Tensor& frame_mask = in.frame_mask;

  TrainStepResult r;
  r.frames = in.frames;

  // 1. Text encoder (trained).
  TextEncoderOutput enc = run_text_encoder(c, store, in.ids, B, T, in.token_mask_btc);

  // 2-3. Durations from the frozen predictor, scaled to the target's frame count.
  {
    autograd::NoGradScope no_grad;
    Tensor noise = opt.duration_noise.defined() ? opt.duration_noise.to(dev) : Tensor();
    if (c.use_stochastic_duration_prediction && !noise.defined()) {
      noise = Tensor::empty({B, 2, T}, DType::F32, dev);
      rng.fill_normal(noise);
    }
    Tensor log_dur = predict_log_durations(c, store, ops::transpose(enc.hidden, 1, 2).detach(), mask,
                                           speaker.defined() ? speaker.detach() : Tensor(), noise,
                                           opt.noise_scale_duration);
    const Tensor w = ops::mul(ops::exp(log_dur), mask).to(Device::CPU);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> d(batch[b].ids.size());
      for (size_t t = 0; t < d.size(); ++t) d[t] = w.data<float>()[b * T + static_cast<int64_t>(t)];
      r.durations.push_back(scale_durations_to_frames(d, r.frames[b]));
    }
  }

  // 4-6. Expanded prior, sample, flow in reverse.
  const std::vector<int32_t> index = frame_to_token_index(r.durations, r.frames, max_frames);
  Tensor m = ops::gather_frames(ops::transpose(enc.prior_means, 1, 2), index, max_frames);
  Tensor logs = ops::gather_frames(ops::transpose(enc.prior_log_std, 1, 2), index, max_frames);
  Tensor eps = opt.prior_noise.defined() ? opt.prior_noise.to(dev) : Tensor();
  if (!eps.defined()) {
    eps = Tensor::empty(m.shape(), DType::F32, dev);
    rng.fill_normal(eps);
  }
  VC_CHECK(eps.shape() == m.shape(), "prior noise must be " << shape_str(m.shape()) << ", got " << eps.describe());
  Tensor z_p = ops::add(m, ops::scale(ops::mul(eps, ops::exp(logs)), opt.noise_scale));
  Tensor z = run_flow_reverse(c, store, z_p, frame_mask, speaker);

  // 7. Whole utterance or a window of K frames per item.
  Tensor target = target_logmel_batch(mel, batch, in);
  Tensor x, mel_mask;
  if (opt.segment_frames > 0) {
    const int64_t K = std::min<int64_t>(opt.segment_frames, *std::min_element(r.frames.begin(), r.frames.end()));
    r.segment_starts = draw_segment_starts(r.frames, K, opt.segment_starts, rng);
    x = slice_frames(z, r.segment_starts, K);
    target = slice_frames(target, r.segment_starts, K);
    mel_mask = Tensor::full({B, 1, K}, 1.0, DType::F32, dev);
  } else {
    x = ops::mul(z, frame_mask);
    mel_mask = frame_mask;
  }

  // 8-10. Decoder, log-mel, masked L1.
  Tensor wave = run_hifigan(c, store, x, speaker, opt.recompute_decoder);
  wave = wave.reshape({wave.dim(0), wave.dim(2)});
  r.generated_logmel = mel.log_mel(wave);
  r.target_logmel = target;
  r.loss = ops::masked_l1_loss(r.generated_logmel, target, mel_mask);
  double valid = 0;
  const Tensor mel_mask_host = mel_mask.to(Device::CPU);
  for (int64_t i = 0; i < mel_mask_host.numel(); ++i) valid += mel_mask_host.data<float>()[i];
  r.loss_elements = static_cast<int64_t>(valid) * mel.n_mels();
  return r;
}

}  // namespace vitscuda::model
