// Duration predictors: the stochastic one (flows with rational-quadratic splines) and the plain
// convolutional one, run in reverse (inference) or for their training loss. Both detach their input.
#pragma once
#include <string>

#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

// Declares every parameter of `duration_predictor.*` (stochastic or plain, by config),
// with the names and shapes of transformers' VitsStochasticDurationPredictor / VitsDurationPredictor
// (weight-normed layers: none in these modules).
void declare_duration_predictor(const io::VitsConfig& config, ParameterStore& store);

// hidden: text encoder output [B, H, T]; mask [B, 1, T]; speaker: [B, E, 1] or undefined.
// noise: [B, 2, T] standard-normal draws (the stochastic predictor's torch.randn), ignored by the plain one.
// Returns log-durations [B, 1, T] (masked), as transformers' duration_predictor(..., reverse=True).
Tensor predict_log_durations(const io::VitsConfig& config, const ParameterStore& store, const Tensor& hidden,
                             const Tensor& mask, const Tensor& speaker, const Tensor& noise, double noise_scale_duration);

// The duration predictor's training loss per item, [B] (summed over channels and tokens; the step divides
// the batch sum by the number of valid tokens). Stochastic predictor: nll + log q with the flow order of
// finetune-hf-vits / original VITS; deterministic predictor: sum over tokens of
// (predicted log-duration - log(durations + 1e-6) * mask)^2 * mask.
// hidden: text-encoder output [B, H, T] (the caller passes it detached); mask [B, 1, T]; speaker [B, E, 1] or
// undefined (detached by the caller); durations: frames per token from the alignment, [B, 1, T] float;
// noise: e_q [B, 2, T] standard-normal draws (stochastic only; ignored by the deterministic one).
// Recorded on the tape: gradients reach the duration predictor's parameters. Dropout off (eval mode, as the anchor).
Tensor duration_predictor_loss(const io::VitsConfig& config, const ParameterStore& store, const Tensor& hidden,
                               const Tensor& mask, const Tensor& speaker, const Tensor& durations, const Tensor& noise);

}  // namespace vitscuda::model
