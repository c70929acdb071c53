// Building blocks shared by the VITS modules: declaring a layer's parameters in the
// ParameterStore (with transformers' init scheme) and applying it.
#pragma once
#include <optional>
#include <string>

#include "engine/ops.h"
#include "engine/parameters.h"

namespace vitscuda::model {

// nn.Conv1d: weight [cout, cin/groups, k], bias [cout] (U(-b, b), b = sqrt(groups/(cin*k))). With weight_norm the
// weight is stored as weight_g [cout, 1, 1] and weight_v [cout, cin/groups, k]. The weight's init unless
// weight_init is given: what a transformers model ends with, kaiming normal for a plain conv, torch's default
// U(-b, b) for a weight-normed one (transformers' _init_weights writes kaiming normal into module.weight,
// which weight norm recomputes from g and v, so the parameters keep torch's default).
void declare_conv1d(ParameterStore& store, const std::string& name, int cin, int cout, int kernel, int groups = 1,
                    bool bias = true, bool weight_norm = false,
                    const std::optional<ParameterInit>& weight_init = std::nullopt);
// nn.ConvTranspose1d: weight [cin, cout, k] (weight_init: kaiming normal unless given), bias [cout].
void declare_conv_transpose1d(ParameterStore& store, const std::string& name, int cin, int cout, int kernel,
                              const ParameterInit& weight_init = {InitKind::KaimingNormal});
// nn.Linear: weight [out, in] N(0, initializer_range), bias zeros.
void declare_linear(ParameterStore& store, const std::string& name, int in, int out, double std, bool bias = true);
// nn.LayerNorm: weight ones, bias zeros.
void declare_layer_norm(ParameterStore& store, const std::string& name, int channels);

// The effective conv weight: weight_norm(weight_g, weight_v) when the layer is weight-normed, else weight.
Tensor conv_weight(const ParameterStore& store, const std::string& name);
// The bias, or an undefined tensor when the layer has none.
Tensor optional_param(const ParameterStore& store, const std::string& name);

// Applies a declared conv with symmetric padding.
Tensor conv1d(const ParameterStore& store, const std::string& name, const Tensor& x, int padding = 0,
              int dilation = 1, int groups = 1);
Tensor linear(const ParameterStore& store, const std::string& name, const Tensor& x);
// x [B, C, T]: LayerNorm over channels with <name>.weight / <name>.bias.
Tensor layer_norm_channels(const ParameterStore& store, const std::string& name, const Tensor& x, double eps);

}  // namespace vitscuda::model
