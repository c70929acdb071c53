// The whole VITS generator as transformers' VitsModel defines it: parameters
// (HF state-dict names) and inference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

struct SynthesisOptions {
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  double speaking_rate = 1.0;
  int speaker_id = -1;  // required (0..num_speakers-1) for multi-speaker models; -1: none
  uint64_t seed = 0;    // seeds every random draw (duration noise, then prior noise)
  // Optional fixed draws instead of the seeded ones (tests feed captured noise; any device):
  Tensor duration_noise;  // [B, 2, T]
  Tensor prior_noise;     // [B, F, frames]
};

// Tensors are on the model's device; frame and sample lengths are host values.
struct SynthesisOutput {
  Tensor text_hidden;       // [B, T, H]
  Tensor prior_means;       // [B, T, F]
  Tensor prior_log_std;     // [B, T, F]
  Tensor log_duration;      // [B, 1, T]
  Tensor durations;         // [B, 1, T] frames per token
  Tensor expanded_means;    // [B, F, frames]
  Tensor expanded_log_std;  // [B, F, frames]
  Tensor prior_latents;     // [B, F, frames]
  Tensor spectrogram;       // [B, F, frames] flow output (decoder input)
  Tensor waveform;          // [B, frames * hop]
  std::vector<int64_t> frame_lengths;   // per item
  std::vector<int64_t> sample_lengths;  // per item: frame_lengths * hop
};

class VitsModel {
 public:
  explicit VitsModel(io::VitsConfig config);  // declares and allocates every parameter (zeros)

  const io::VitsConfig& config() const { return config_; }
  ParameterStore& params() { return store_; }
  const ParameterStore& params() const { return store_; }

  // Moves the weights to `device`; synthesis then runs there.
  void to(Device device) { store_.to(device); }
  Device device() const { return store_.device(); }

  // The spreads a transformers model is initialised with (random normal / kaiming / uniform, zero padding embedding
  // row; weight-normed convs: see declare_conv1d), except HiFi-GAN's upsamplers and residual blocks: N(0, 0.01) as
  // VITS trains them from scratch (see declare_hifigan).
  void initialize(uint64_t seed);

  // batch_ids: one id sequence per item (padded internally). Throws on an empty sequence,
  // a bad speaker id or an id outside the vocabulary.
  SynthesisOutput synthesize(const std::vector<std::vector<int32_t>>& batch_ids, const SynthesisOptions& options) const;

 private:
  io::VitsConfig config_;
  ParameterStore store_;
};

// Declares every parameter of the model (including the posterior encoder, which inference
// does not use but checkpoints carry).
void declare_vits(const io::VitsConfig& config, ParameterStore& store);

}  // namespace vitscuda::model
