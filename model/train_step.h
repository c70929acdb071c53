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

// Which parameters the mel-mode step trains (text encoder, flow, decoder, speaker embedding).
bool trainable_in_mel_mode(const std::string& name);

// Runs the forward pass, recording on the current tape (if any).
TrainStepResult mel_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                     const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng);

}  // namespace vitscuda::model
