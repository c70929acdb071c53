// The WaveNet stack of the flow's coupling layers and the posterior encoder
// (weight-normed dilated convs, gated tanh*sigmoid, residual/skip split).
#pragma once
#include <string>

#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

void declare_wavenet(const io::VitsConfig& config, ParameterStore& store, const std::string& prefix, int num_layers);

// x [B, H, T], mask [B, 1, T], speaker [B, E, 1] or undefined. Returns the summed skip outputs * mask.
Tensor run_wavenet(const io::VitsConfig& config, const ParameterStore& store, const std::string& prefix,
                   int num_layers, const Tensor& x, const Tensor& mask, const Tensor& speaker);

}  // namespace vitscuda::model
