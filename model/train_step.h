// The mel-mode training step: text -> waveform through the generator, log-mel L1 against the
// target, gradients into text encoder, flow and decoder.
// Exact definition: durations from the frozen duration predictor scaled to the target's
// frame count (largest-remainder rounding), prior sample, flow in reverse, HiFi-GAN on the
// whole utterance or a random window, log-mel of both sides, masked mean L1.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/random.h"
#include "model/mel.h"
#include "model/training_objective.h"
#include "model/vits.h"

namespace vitscuda::model {

struct TrainStepResult {
  Tensor loss;                                  // scalar, recorded on the tape
  std::vector<std::vector<int32_t>> durations;  // frames per token, per item
  std::vector<int64_t> frames;                  // target frames per item
  std::vector<int64_t> segment_starts;
  Tensor generated_logmel, target_logmel;
  int64_t loss_elements = 0;                    // mel bins x valid frames
};

// The batch as every training step feeds it: padded token ids and masks, the speaker embedding and the
// frame counts of the targets, built on the host and moved to the model's device.
struct BatchInputs {
  int64_t batch = 0, tokens = 0;       // B and the longest item's token count T
  std::vector<int32_t> ids;            // B * T, padded
  std::vector<int64_t> token_lengths;  // per item
  Tensor token_mask_btc;               // [B, T, 1] (the text encoder's layout)
  Tensor token_mask;                   // [B, 1, T]
  Tensor speaker;                      // [B, E, 1] (embed_speaker of each item) or undefined
  std::vector<int64_t> frames;         // per item: samples / hop
  int64_t max_frames = 0;
  Tensor frame_mask;                   // [B, 1, max_frames]
};
// Checks every item (tokens, length, speaker id; errors name the item) and builds its inputs.
BatchInputs batch_inputs_of(const VitsModel& model, const std::vector<TrainingItem>& batch);

// The targets' log-mels, [B, n_mels, max_frames] on the device (zero past each item's frames).
Tensor target_logmel_batch(const MelSpectrogram& mel, const std::vector<TrainingItem>& batch, const BatchInputs& in);

// One random window start per item, uniform over [0, frames_b - K] (floor(U * (frames_b - K + 1)), as
// transformers' rand_slice_segments), or the fixed `starts` when given (tests).
std::vector<int64_t> draw_segment_starts(const std::vector<int64_t>& frames, int64_t K,
                                         const std::vector<int64_t>& starts, Rng& rng);
// x [B, C, T] -> the K frames of each item from its start, [B, C, K] (a gather: gradients scatter back).
Tensor slice_frames(const Tensor& x, const std::vector<int64_t>& starts, int64_t K);

// Which parameters the mel-mode step trains (text encoder, flow, decoder, speaker embedding).
bool trainable_in_mel_mode(const std::string& name);

// Runs the forward pass, recording on the current tape (if any).
TrainStepResult mel_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                     const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng);

}  // namespace vitscuda::model
