// HiFi-GAN decoder: latent frames -> waveform.
#pragma once
#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

void declare_hifigan(const io::VitsConfig& config, ParameterStore& store);

// z [B, F, T], speaker [B, E, 1] or undefined -> waveform [B, 1, T * prod(upsample_rates)].
// recompute_resblocks: when training, keep only each residual block's input and output and
// recompute its inside during the backward (the decoder's activations dominate training memory:
// about 250 MB per second of audio for mms-tts-eng without it).
Tensor run_hifigan(const io::VitsConfig& config, const ParameterStore& store, const Tensor& z, const Tensor& speaker,
                   bool recompute_resblocks = false);

}  // namespace vitscuda::model
