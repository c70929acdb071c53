#include "model/layers.h"

#include <cmath>

namespace vitscuda::model {

void declare_conv1d(ParameterStore& store, const std::string& name, int cin, int cout, int kernel, int groups,
                    bool bias, bool weight_norm, const std::optional<ParameterInit>& weight_init) {
  const int cin_per_group = cin / groups;
  // torch's default conv init, kaiming_uniform(a = sqrt(5)): U(-b, b); the same b bounds the bias.
  const double bound = std::sqrt(static_cast<double>(groups) / (static_cast<double>(cin) * kernel));
  if (weight_norm) {
    store.declare(name + ".weight_g", {cout, 1, 1}, {InitKind::WeightNormG, 0.0, name + ".weight_v"});
    store.declare(name + ".weight_v", {cout, cin_per_group, kernel},
                  weight_init.value_or(ParameterInit{InitKind::Uniform, bound}));
  } else {
    store.declare(name + ".weight", {cout, cin_per_group, kernel},
                  weight_init.value_or(ParameterInit{InitKind::KaimingNormal}));
  }
  if (bias) {
    store.declare(name + ".bias", {cout}, {InitKind::Uniform, bound});
  }
}

void declare_conv_transpose1d(ParameterStore& store, const std::string& name, int cin, int cout, int kernel,
                              const ParameterInit& weight_init) {
  store.declare(name + ".weight", {cin, cout, kernel}, weight_init);
  // torch's ConvTranspose1d.in_channels is cin; transformers' bias bound uses in_channels * kernel.
  const double bound = std::sqrt(1.0 / (static_cast<double>(cin) * kernel));
  store.declare(name + ".bias", {cout}, {InitKind::Uniform, bound});
}

void declare_linear(ParameterStore& store, const std::string& name, int in, int out, double std, bool bias) {
  store.declare(name + ".weight", {out, in}, {InitKind::Normal, std});
  if (bias) store.declare(name + ".bias", {out}, {InitKind::Zeros});
}

void declare_layer_norm(ParameterStore& store, const std::string& name, int channels) {
  store.declare(name + ".weight", {channels}, {InitKind::Ones});
  store.declare(name + ".bias", {channels}, {InitKind::Zeros});
}

Tensor conv_weight(const ParameterStore& store, const std::string& name) {
  if (store.has(name + ".weight_g")) return ops::weight_norm(store.get(name + ".weight_g"), store.get(name + ".weight_v"));
  return store.get(name + ".weight");
}

Tensor optional_param(const ParameterStore& store, const std::string& name) {
  return store.has(name) ? store.get(name) : Tensor();
}

Tensor conv1d(const ParameterStore& store, const std::string& name, const Tensor& x, int padding, int dilation,
              int groups) {
  return ops::conv1d(x, conv_weight(store, name), optional_param(store, name + ".bias"), 1, padding, padding, dilation,
                     groups);
}

Tensor linear(const ParameterStore& store, const std::string& name, const Tensor& x) {
  return ops::linear(x, store.get(name + ".weight"), optional_param(store, name + ".bias"));
}

Tensor layer_norm_channels(const ParameterStore& store, const std::string& name, const Tensor& x, double eps) {
  return ops::layer_norm_channels(x, store.get(name + ".weight"), store.get(name + ".bias"), eps);
}

}  // namespace vitscuda::model
