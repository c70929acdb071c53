// HiFi-GAN decoder: latent frames -> waveform.
#pragma once
#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

void declare_hifigan(const io::VitsConfig& config, ParameterStore& store);

// z [B, F, T], speaker [B, E, 1] or undefined -> waveform [B, 1, T * prod(upsample_rates)].
Tensor run_hifigan(const io::VitsConfig& config, const ParameterStore& store, const Tensor& z, const Tensor& speaker);

}  // namespace vitscuda::model
