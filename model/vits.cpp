#include "model/vits.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "model/alignment.h"
#include "model/duration_predictor.h"
#include "model/flow.h"
#include "model/hifigan.h"
#include "model/layers.h"
#include "model/posterior_encoder.h"
#include "model/text_encoder.h"
#include "model/wavenet.h"

namespace vitscuda::model {

void declare_vits(const io::VitsConfig& c, ParameterStore& store) {
  declare_text_encoder(c, store);
  declare_flow(c, store);
  declare_hifigan(c, store);
  declare_duration_predictor(c, store);
  if (c.num_speakers > 1)
    store.declare("embed_speaker.weight", {c.num_speakers, c.speaker_embedding_size}, {InitKind::Normal, c.initializer_range});
  declare_posterior_encoder(c, store);
}

VitsModel::VitsModel(io::VitsConfig config) : config_(std::move(config)) {
  config_.validate("model config");
  declare_vits(config_, store_);
  store_.finalize();
}

void VitsModel::initialize(uint64_t seed) {
  VC_CHECK(store_.device() == Device::CPU, "initialize: the model's weights must be on the CPU");
  store_.initialize(seed);
  // nn.Embedding(padding_idx=pad_token_id) keeps the padding row at zero.
  if (config_.pad_token_id >= 0 && config_.pad_token_id < config_.vocab_size) {
    Tensor table = store_.get("text_encoder.embed_tokens.weight");
    float* row = table.data<float>() + static_cast<int64_t>(config_.pad_token_id) * config_.hidden_size;
    std::fill(row, row + config_.hidden_size, 0.0f);
  }
}


SynthesisOutput VitsModel::synthesize(const std::vector<std::vector<int32_t>>& batch_ids,
                                      const SynthesisOptions& opt) const {
  const io::VitsConfig& c = config_;
  VC_CHECK(!batch_ids.empty(), "synthesize: empty batch");
  VC_CHECK(opt.speaking_rate > 0, "synthesize: speaking_rate must be > 0, got " << opt.speaking_rate);
  const int64_t B = static_cast<int64_t>(batch_ids.size());
  const Device dev = store_.device();
  int64_t T = 0;
  for (size_t b = 0; b < batch_ids.size(); ++b) {
    VC_CHECK(!batch_ids[b].empty(), "synthesize: item " << b << " has no tokens");
    T = std::max<int64_t>(T, static_cast<int64_t>(batch_ids[b].size()));
  }
  // Padded positions are masked everywhere; any valid id serves as filler.
  std::vector<int32_t> ids(static_cast<size_t>(B * T), std::max(c.pad_token_id, 0));
  Tensor mask_btc = Tensor::zeros({B, T, 1});
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < batch_ids[b].size(); ++t) {
      ids[b * T + t] = batch_ids[b][t];
      mask_btc.data<float>()[b * T + t] = 1.0f;
    }
  mask_btc = mask_btc.to(dev);

  Tensor speaker;
  if (c.num_speakers > 1) {
    VC_CHECK(opt.speaker_id >= 0 && opt.speaker_id < c.num_speakers,
             "this model has " << c.num_speakers << " speakers: pass a speaker id in 0.." << c.num_speakers - 1
                               << " (got " << opt.speaker_id << ")");
    std::vector<int32_t> sid(static_cast<size_t>(B), opt.speaker_id);
    speaker = ops::transpose(ops::embedding(store_.get("embed_speaker.weight"), sid, B, 1), 1, 2);  // [B, E, 1]
  } else {
    VC_CHECK(opt.speaker_id <= 0, "this model has a single speaker; speaker id " << opt.speaker_id << " is invalid");
  }

  SynthesisOutput out;
  TextEncoderOutput enc = run_text_encoder(c, store_, ids, B, T, mask_btc);
  out.text_hidden = enc.hidden;
  out.prior_means = enc.prior_means;
  out.prior_log_std = enc.prior_log_std;

  const Tensor mask = ops::transpose(mask_btc, 1, 2);  // [B, 1, T]
  Rng rng(opt.seed);
  Tensor duration_noise = opt.duration_noise.defined() ? opt.duration_noise.to(dev) : Tensor();
  if (c.use_stochastic_duration_prediction && !duration_noise.defined()) {
    duration_noise = Tensor::empty({B, 2, T}, DType::F32, dev);
    rng.fill_normal(duration_noise);
  }
  if (duration_noise.defined())
    VC_CHECK(duration_noise.shape() == Shape({B, 2, T}),
             "duration noise must be " << shape_str({B, 2, T}) << ", got " << duration_noise.describe());
  out.log_duration = predict_log_durations(c, store_, ops::transpose(enc.hidden, 1, 2), mask, speaker, duration_noise,
                                           opt.noise_scale_duration);

  // duration = ceil(exp(log_duration) * mask * length_scale), as transformers computes it.
  const double length_scale = 1.0 / opt.speaking_rate;
  out.durations = ops::ceil(ops::scale(ops::mul(ops::exp(out.log_duration), mask), length_scale));
  int64_t frames = 1;
  const Tensor durations_host = out.durations.to(Device::CPU);
  const float* dur = durations_host.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    double total = 0;
    for (int64_t t = 0; t < T; ++t) total += dur[b * T + t];
    const int64_t len = std::max<int64_t>(1, static_cast<int64_t>(total));
    out.frame_lengths.push_back(len);
    out.sample_lengths.push_back(len * c.total_upsample());
    frames = std::max(frames, len);
  }
  Tensor frame_mask = Tensor::zeros({B, 1, frames});
  for (int64_t b = 0; b < B; ++b)
    std::fill(frame_mask.data<float>() + b * frames, frame_mask.data<float>() + b * frames + out.frame_lengths[b], 1.0f);
  frame_mask = frame_mask.to(dev);

  std::vector<std::vector<int32_t>> token_frames(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) token_frames[b].push_back(static_cast<int32_t>(dur[b * T + t]));
  const std::vector<int32_t> index = frame_to_token_index(token_frames, out.frame_lengths, frames);
  out.expanded_means = ops::gather_frames(ops::transpose(enc.prior_means, 1, 2), index, frames);
  out.expanded_log_std = ops::gather_frames(ops::transpose(enc.prior_log_std, 1, 2), index, frames);

  Tensor prior_noise = opt.prior_noise.defined() ? opt.prior_noise.to(dev) : Tensor();
  if (!prior_noise.defined()) {
    prior_noise = Tensor::empty(out.expanded_means.shape(), DType::F32, dev);
    rng.fill_normal(prior_noise);
  }
  VC_CHECK(prior_noise.shape() == out.expanded_means.shape(),
           "prior noise must be " << shape_str(out.expanded_means.shape()) << ", got " << prior_noise.describe());
  out.prior_latents = ops::add(out.expanded_means,
                               ops::scale(ops::mul(prior_noise, ops::exp(out.expanded_log_std)), opt.noise_scale));
  Tensor latents = run_flow_reverse(c, store_, out.prior_latents, frame_mask, speaker);
  out.spectrogram = ops::mul(latents, frame_mask);
  Tensor wave = run_hifigan(c, store_, out.spectrogram, speaker);
  out.waveform = wave.reshape({B, wave.dim(2)});
  return out;
}

}  // namespace vitscuda::model
