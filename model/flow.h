// The prior's normalising flow: residual coupling layers (WaveNet mean, zero log-scale),
// each followed by a flip of the whole channel axis.
#pragma once
#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

void declare_flow(const io::VitsConfig& config, ParameterStore& store);

// z [B, F, T] -> flow^-1(z); mask [B, 1, T]; speaker [B, E, 1] or undefined.
Tensor run_flow_reverse(const io::VitsConfig& config, const ParameterStore& store, const Tensor& z, const Tensor& mask,
                        const Tensor& speaker);

// The training direction: z (the posterior sample) [B, F, T] -> z_p = flow(z), recorded on the tape. The
// coupling's log-scale is zero, so there is no log-determinant to return.
Tensor run_flow_forward(const io::VitsConfig& config, const ParameterStore& store, const Tensor& z, const Tensor& mask,
                        const Tensor& speaker);

}  // namespace vitscuda::model
