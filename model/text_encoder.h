// Text encoder: token embedding, transformer layers with windowed relative-position
// attention, projection to the prior's mean and log standard deviation.
#pragma once
#include <vector>

#include "engine/parameters.h"
#include "io/hf_config.h"

namespace vitscuda::model {

void declare_text_encoder(const io::VitsConfig& config, ParameterStore& store);

struct TextEncoderOutput {
  Tensor hidden;         // [B, T, H] (transformers' last_hidden_state)
  Tensor prior_means;    // [B, T, F]
  Tensor prior_log_std;  // [B, T, F] (transformers calls it prior_log_variances; it is a log-std)
};

// ids: B rows of T ids (padded); mask [B, T, 1] with 1 for real tokens.
TextEncoderOutput run_text_encoder(const io::VitsConfig& config, const ParameterStore& store,
                                   const std::vector<int32_t>& ids, int64_t batch, int64_t time, const Tensor& mask);

}  // namespace vitscuda::model
