// The VAE objective's forward ("vae"): the full VITS generator objective without the discriminators, as
// finetune-hf-vits trains VitsModel (the exact definition: docs/full_objective.md, sections 2 and 3).
//   posterior: linear spectrogram of the target -> posterior encoder -> z = m_q + eps_q * exp(logs_q)
//   flow (forward): z -> z_p
//   alignment: monotonic alignment search on log N(z_p; m_p, exp(logs_p)) (no gradient) -> frames per token
//   duration loss: the duration predictor's training loss on the detached text encoding and those durations
//   KL: sum((logs_p' - logs_q - 1/2 + (z_p - m_p')^2 exp(-2 logs_p' ) / 2) * frame_mask) / sum(frame_mask),
//       with the prior expanded to frames through the alignment (m_p', logs_p')
//   mel: a random window of K frames of z -> HiFi-GAN -> log-mel L1 against the target's log-mel window
//   total = c_mel * mel + c_kl * kl + c_dur * dur
#pragma once
#include <cstdint>
#include <vector>

#include "engine/random.h"
#include "model/mel.h"
#include "model/train_step.h"
#include "model/training_objective.h"
#include "model/vits.h"

namespace vitscuda::model {

struct VaeStepResult {
  Tensor total;                     // scalar on the tape: the weighted sum the optimiser minimises
  Tensor mel, kl, duration;         // scalars on the tape: the unweighted terms
  std::vector<int32_t> alignment;   // frame -> token map, B * max_frames entries (-1: padding)
  std::vector<int64_t> frames;      // target frames per item
  std::vector<int64_t> segment_starts;
  Tensor generated_logmel, target_logmel;  // [B, n_mels, K]
  Tensor waveform;                  // the decoder's output for the windows, [B, K * hop]
};

// Every generator parameter trains in the VAE objective (the duration loss reaches only the duration
// predictor; the text encoder gets the KL's gradients).
bool trainable_in_vae_mode(const std::string& name);

// The window length K in frames: options.segment_frames, which must be > 0 (the decoder sees windows only).
// Runs the forward, recording on the current tape (if any). Random draws (when not fixed in `options`), in
// order: the posterior noise [B, F, max_frames], the duration noise [B, 2, T], the window starts.
VaeStepResult vae_training_forward(const VitsModel& model, const MelSpectrogram& mel,
                                   const std::vector<TrainingItem>& batch, const TrainStepOptions& options, Rng& rng);

}  // namespace vitscuda::model
