// Duration predictors run in reverse (inference): the stochastic one (flows with
// rational-quadratic splines) and the plain convolutional one. Both detach their input.
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

}  // namespace vitscuda::model
