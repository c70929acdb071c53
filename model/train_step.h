// The mel-mode training step (the seed's method): text -> waveform through the
// generator, log-mel L1 against the target, gradients into text encoder, flow and decoder.
// Exact definition: durations from the frozen duration predictor scaled to the target's
// frame count (largest-remainder rounding), prior sample, flow in reverse, HiFi-GAN on the
// whole utterance or a random window, log-mel of both sides, masked mean L1.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/random.h"
#include "model/mel.h"
#include "model/vits.h"

namespace vitscuda::model {

struct TrainingItem {
  std::vector<int32_t> ids;   // token ids (with blanks)
  std::vector<float> wave;    // target audio at the model's sampling rate
  Tensor target_logmel;       // [n_mels, frames]: log-mel of the whole target (undefined: computed here)
  int speaker_id = -1;
};

struct TrainStepOptions {
  double noise_scale = 0.667;
  double noise_scale_duration = 0.8;
  int segment_frames = 0;  // 0: decode the whole utterance
  bool recompute_decoder = false;  // recompute HiFi-GAN residual blocks in the backward (less memory)
  // Fixed draws instead of the RNG (tests): duration noise [B,2,T], prior noise [B,F,frames], segment starts.
  Tensor duration_noise;
  Tensor prior_noise;
  std::vector<int64_t> segment_starts;
};

struct TrainStepResult {
  Tensor loss;                                  // scalar, recorded on the tape
  std::vector<std::vector<int32_t>> durations;  // frames per token, per item
  std::vector<int64_t> frames;                  // target frames per item
  std::vector<int64_t> segment_starts;
  Tensor generated_logmel, target_logmel;
  int64_t loss_elements = 0;                    // mel bins x valid frames
};

// Which parameters the mel-mode step trains (text encoder, flow, decoder, speaker embedding).
bool trainable_in_mel_mode(const std::string& name);

// Runs the forward pass, recording on the current tape (if any).
TrainStepResult mel_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                     const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng);

}  // namespace vitscuda::model
