// The posterior encoder q(z | spectrogram): used only in training, where it encodes the target's linear
// spectrogram into the latent the decoder learns to vocode and the flow maps onto the text's prior.
#pragma once
#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

void declare_posterior_encoder(const io::VitsConfig& config, ParameterStore& store);

struct PosteriorOutput {
  Tensor sample;   // z = (mean + noise * exp(log_std)) * mask  [B, F, T]
  Tensor mean;     // [B, F, T]
  Tensor log_std;  // [B, F, T]
};

// spectrogram [B, spectrogram_bins, T]; mask [B, 1, T]; speaker [B, E, 1] or undefined; noise [B, F, T]
// standard-normal draws (transformers' randn_like). conv_pre -> WaveNet -> conv_proj, as VitsPosteriorEncoder.
PosteriorOutput run_posterior_encoder(const io::VitsConfig& config, const ParameterStore& store,
                                      const Tensor& spectrogram, const Tensor& mask, const Tensor& speaker,
                                      const Tensor& noise);

}  // namespace vitscuda::model
