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

TrainStepResult mel_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                     const std::vector<TrainingItem>& batch, const TrainStepOptions& opt, Rng& rng) {
  const io::VitsConfig& c = model.config();
  const ParameterStore& store = model.params();
  VC_CHECK(!batch.empty(), "training step: empty batch");
  const int64_t B = static_cast<int64_t>(batch.size());
  const int64_t hop = c.total_upsample();
  const Device dev = store.device();  // inputs are built on the host, then moved there
  VC_CHECK(mel.hop() == hop, "training step: mel hop " << mel.hop() << " differs from the decoder's upsampling " << hop);

  TrainStepResult r;
  int64_t T = 0;
  for (int64_t b = 0; b < B; ++b) {
    const TrainingItem& item = batch[b];
    VC_CHECK(!item.ids.empty(), "training item " << b << " has no tokens");
    const int64_t frames = static_cast<int64_t>(item.wave.size()) / hop;
    VC_CHECK(frames >= 1, "training item " << b << " has " << item.wave.size() << " samples, fewer than one frame ("
                                           << hop << " samples)");
    r.frames.push_back(frames);
    T = std::max<int64_t>(T, static_cast<int64_t>(item.ids.size()));
  }
  const int64_t max_frames = *std::max_element(r.frames.begin(), r.frames.end());

  // Inputs.
  std::vector<int32_t> ids(static_cast<size_t>(B * T), std::max(c.pad_token_id, 0));
  Tensor mask_btc = Tensor::zeros({B, T, 1});
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < batch[b].ids.size(); ++t) {
      ids[b * T + t] = batch[b].ids[t];
      mask_btc.data<float>()[b * T + t] = 1.0f;
    }
  mask_btc = mask_btc.to(dev);
  Tensor speaker;
  if (c.num_speakers > 1) {
    std::vector<int32_t> sid;
    for (const TrainingItem& item : batch) {
      VC_CHECK(item.speaker_id >= 0 && item.speaker_id < c.num_speakers,
               "training item has speaker id " << item.speaker_id << "; the model has " << c.num_speakers << " speakers");
      sid.push_back(item.speaker_id);
    }
    speaker = ops::transpose(ops::embedding(store.get("embed_speaker.weight"), sid, B, 1), 1, 2);
  }

  // 1. Text encoder (trained).
  TextEncoderOutput enc = run_text_encoder(c, store, ids, B, T, mask_btc);
  const Tensor mask = ops::transpose(mask_btc, 1, 2);  // [B, 1, T]

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
  Tensor frame_mask = Tensor::zeros({B, 1, max_frames});
  for (int64_t b = 0; b < B; ++b)
    std::fill(frame_mask.data<float>() + b * max_frames, frame_mask.data<float>() + b * max_frames + r.frames[b], 1.0f);
  frame_mask = frame_mask.to(dev);
  Tensor eps = opt.prior_noise.defined() ? opt.prior_noise.to(dev) : Tensor();
  if (!eps.defined()) {
    eps = Tensor::empty(m.shape(), DType::F32, dev);
    rng.fill_normal(eps);
  }
  VC_CHECK(eps.shape() == m.shape(), "prior noise must be " << shape_str(m.shape()) << ", got " << eps.describe());
  Tensor z_p = ops::add(m, ops::scale(ops::mul(eps, ops::exp(logs)), opt.noise_scale));
  Tensor z = run_flow_reverse(c, store, z_p, frame_mask, speaker);

  // 7. Whole utterance or a window of K frames per item.
  Tensor target = Tensor::zeros({B, mel.n_mels(), max_frames});
  for (int64_t b = 0; b < B; ++b) {
    const Tensor t = (batch[b].target_logmel.defined() ? batch[b].target_logmel : mel.log_mel_of(batch[b].wave, dev))
                         .to(Device::CPU);
    VC_CHECK(t.dim(0) == mel.n_mels() && t.dim(1) == r.frames[b],
             "target log-mel of item " << b << " is " << t.describe() << ", expected [" << mel.n_mels() << ", "
                                       << r.frames[b] << "]");
    for (int64_t k = 0; k < mel.n_mels(); ++k)
      std::copy(t.data<float>() + k * r.frames[b], t.data<float>() + (k + 1) * r.frames[b],
                target.data<float>() + (b * mel.n_mels() + k) * max_frames);
  }
  target = target.to(dev);
  Tensor x, mel_mask;
  if (opt.segment_frames > 0) {
    const int64_t K = std::min<int64_t>(opt.segment_frames, *std::min_element(r.frames.begin(), r.frames.end()));
    std::vector<Tensor> windows, targets;
    for (int64_t b = 0; b < B; ++b) {
      int64_t start;
      if (!opt.segment_starts.empty()) {
        VC_CHECK(static_cast<int64_t>(opt.segment_starts.size()) == B, "segment_starts needs one start per item");
        start = opt.segment_starts[b];
      } else {
        start = static_cast<int64_t>(rng.uniform() * static_cast<double>(r.frames[b] - K + 1));
        start = std::min(start, r.frames[b] - K);
      }
      VC_CHECK(start >= 0 && start + K <= r.frames[b], "segment start " << start << " of item " << b << " out of range");
      r.segment_starts.push_back(start);
      windows.push_back(ops::narrow(ops::narrow(z, 0, b, 1), 2, start, K));
      targets.push_back(ops::narrow(ops::narrow(target, 0, b, 1), 2, start, K));
    }
    x = ops::cat(windows, 0);
    target = ops::cat(targets, 0);
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
