#include "model/duration_predictor.h"

#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/ops.h"
#include "model/layers.h"

namespace vitscuda::model {

namespace {

const char* const kPrefix = "duration_predictor";

// nn.LayerNorm's default eps: VitsDilatedDepthSeparableConv builds its norms without the config's eps.
constexpr double kDepthSeparableLayerNormEps = 1e-5;

// VitsDilatedDepthSeparableConv: `depth_separable_num_layers` blocks of a depthwise dilated conv
// (dilation kernel^i) and a pointwise conv, each followed by LayerNorm over channels and GELU.
void declare_depth_separable_conv(const io::VitsConfig& c, ParameterStore& store, const std::string& p) {
  const int channels = c.hidden_size;
  const int layers = c.depth_separable_num_layers;
  const int kernel = c.duration_predictor_kernel_size;
  // State-dict order: each ModuleList in turn.
  for (int i = 0; i < layers; ++i)
    declare_conv1d(store, p + ".convs_dilated." + std::to_string(i), channels, channels, kernel, channels);
  for (int i = 0; i < layers; ++i)
    declare_conv1d(store, p + ".convs_pointwise." + std::to_string(i), channels, channels, 1);
  for (int i = 0; i < layers; ++i) declare_layer_norm(store, p + ".norms_1." + std::to_string(i), channels);
  for (int i = 0; i < layers; ++i) declare_layer_norm(store, p + ".norms_2." + std::to_string(i), channels);
}

// x [B, H, T]; conditioning [B, H, T] or undefined. Dropout is the identity at inference.
Tensor run_depth_separable_conv(const io::VitsConfig& c, const ParameterStore& store, const std::string& p,
                                Tensor x, const Tensor& mask, const Tensor& conditioning) {
  const int channels = c.hidden_size;
  const int kernel = c.duration_predictor_kernel_size;
  if (conditioning.defined()) x = ops::add(x, conditioning);
  int dilation = 1;
  for (int i = 0; i < c.depth_separable_num_layers; ++i, dilation *= kernel) {
    const std::string idx = std::to_string(i);
    const int padding = (kernel * dilation - dilation) / 2;
    Tensor h = conv1d(store, p + ".convs_dilated." + idx, ops::mul(x, mask), padding, dilation, channels);
    h = ops::gelu(layer_norm_channels(store, p + ".norms_1." + idx, h, kDepthSeparableLayerNormEps));
    h = conv1d(store, p + ".convs_pointwise." + idx, h);
    h = ops::gelu(layer_norm_channels(store, p + ".norms_2." + idx, h, kDepthSeparableLayerNormEps));
    x = ops::add(x, h);
  }
  return ops::mul(x, mask);
}

// VitsElementwiseAffine: translate and log_scale [channels, 1].
void declare_elementwise_affine(const io::VitsConfig& c, ParameterStore& store, const std::string& p) {
  store.declare(p + ".translate", {c.depth_separable_channels, 1}, {InitKind::Zeros});
  store.declare(p + ".log_scale", {c.depth_separable_channels, 1}, {InitKind::Zeros});
}

// Inverse of y = translate + exp(log_scale) * x.
Tensor run_elementwise_affine_reverse(const ParameterStore& store, const std::string& p, const Tensor& x,
                                      const Tensor& mask) {
  Tensor inv_scale = ops::exp(ops::scale(store.get(p + ".log_scale"), -1.0));
  return ops::mul(ops::mul(ops::sub(x, store.get(p + ".translate")), inv_scale), mask);
}

// VitsConvFlow: its filter width is hidden_size (not duration_predictor_filter_channels).
void declare_conv_flow(const io::VitsConfig& c, ParameterStore& store, const std::string& p) {
  const int half = c.depth_separable_channels / 2;
  const int filters = c.hidden_size;
  declare_conv1d(store, p + ".conv_pre", half, filters, 1);
  declare_depth_separable_conv(c, store, p + ".conv_dds");
  declare_conv1d(store, p + ".conv_proj", filters, half * (3 * c.duration_predictor_flow_bins - 1), 1);
}

// Reverse pass: the first half conditions a rational-quadratic spline that inverts the second half.
Tensor run_conv_flow_reverse(const io::VitsConfig& c, const ParameterStore& store, const std::string& p,
                             const Tensor& x, const Tensor& mask, const Tensor& conditioning) {
  const int64_t half = c.depth_separable_channels / 2;
  const int64_t bins = c.duration_predictor_flow_bins;
  const int64_t params_per_value = 3 * bins - 1;
  const int64_t B = x.dim(0), T = x.dim(2);
  Tensor first = ops::narrow(x, 1, 0, half);
  Tensor second = ops::narrow(x, 1, half, half);

  Tensor h = conv1d(store, p + ".conv_pre", first);
  h = run_depth_separable_conv(c, store, p + ".conv_dds", h, mask, conditioning);
  h = ops::mul(conv1d(store, p + ".conv_proj", h), mask);  // [B, half * (3 bins - 1), T]

  // [B, half, 3 bins - 1, T] -> [B, half, T, 3 bins - 1] -> one row of spline parameters per value.
  const int64_t n = B * half * T;
  Tensor spline_params = ops::transpose(h.reshape({B, half, params_per_value, T}), 2, 3).reshape({n, params_per_value});
  const double inv_sqrt_filters = 1.0 / std::sqrt(static_cast<double>(c.hidden_size));
  Tensor widths = ops::scale(ops::narrow(spline_params, 1, 0, bins), inv_sqrt_filters);
  Tensor heights = ops::scale(ops::narrow(spline_params, 1, bins, bins), inv_sqrt_filters);
  Tensor derivatives = ops::narrow(spline_params, 1, 2 * bins, bins - 1);

  auto [inverted, log_abs_det] = ops::rational_quadratic_spline(second.reshape({n}), widths, heights, derivatives,
                                                                /*reverse=*/true, c.duration_predictor_tail_bound);
  (void)log_abs_det;  // only the forward (training) direction accumulates it
  return ops::mul(ops::cat({first, inverted.reshape({B, half, T})}, 1), mask);
}

void declare_stochastic(const io::VitsConfig& c, ParameterStore& store) {
  const std::string p = kPrefix;
  const int H = c.hidden_size;
  declare_conv1d(store, p + ".conv_pre", H, H, 1);
  declare_conv1d(store, p + ".conv_proj", H, H, 1);
  declare_depth_separable_conv(c, store, p + ".conv_dds");
  if (c.speaker_embedding_size != 0) declare_conv1d(store, p + ".cond", c.speaker_embedding_size, H, 1);
  declare_elementwise_affine(c, store, p + ".flows.0");
  for (int f = 1; f <= c.duration_predictor_num_flows; ++f)
    declare_conv_flow(c, store, p + ".flows." + std::to_string(f));

  // The posterior branch (training only) is part of every checkpoint.
  declare_conv1d(store, p + ".post_conv_pre", 1, H, 1);
  declare_conv1d(store, p + ".post_conv_proj", H, H, 1);
  declare_depth_separable_conv(c, store, p + ".post_conv_dds");
  declare_elementwise_affine(c, store, p + ".post_flows.0");
  for (int f = 1; f <= c.duration_predictor_num_flows; ++f)
    declare_conv_flow(c, store, p + ".post_flows." + std::to_string(f));
}

void declare_plain(const io::VitsConfig& c, ParameterStore& store) {
  const std::string p = kPrefix;
  const int F = c.duration_predictor_filter_channels;
  const int k = c.duration_predictor_kernel_size;
  declare_conv1d(store, p + ".conv_1", c.hidden_size, F, k);
  declare_layer_norm(store, p + ".norm_1", F);
  declare_conv1d(store, p + ".conv_2", F, F, k);
  declare_layer_norm(store, p + ".norm_2", F);
  declare_conv1d(store, p + ".proj", F, 1, 1);
  if (c.speaker_embedding_size != 0) declare_conv1d(store, p + ".cond", c.speaker_embedding_size, c.hidden_size, 1);
}

Tensor predict_stochastic(const io::VitsConfig& c, const ParameterStore& store, const Tensor& hidden,
                          const Tensor& mask, const Tensor& speaker, const Tensor& noise, double noise_scale) {
  const std::string p = kPrefix;
  const int64_t B = hidden.dim(0), T = hidden.dim(2);
  VC_CHECK(noise.defined() && noise.shape() == Shape({B, 2, T}),
           "duration_predictor: noise must be " << shape_str({B, 2, T}) << ", got "
                                                << (noise.defined() ? noise.describe() : std::string("undefined")));

  Tensor x = conv1d(store, p + ".conv_pre", hidden);
  if (speaker.defined()) x = ops::add(x, conv1d(store, p + ".cond", speaker.detach()));
  x = run_depth_separable_conv(c, store, p + ".conv_dds", x, mask, Tensor());
  x = ops::mul(conv1d(store, p + ".conv_proj", x), mask);

  // Flows in reverse order, skipping flows.1 (transformers' `flows[:-2] + [flows[-1]]`: that flow only
  // transforms the channel discarded at the end).
  std::vector<int> order;
  for (int f = c.duration_predictor_num_flows; f >= 2; --f) order.push_back(f);
  order.push_back(0);

  Tensor latents = ops::scale(noise.detach(), noise_scale);
  for (int f : order) {
    const std::string flow = p + ".flows." + std::to_string(f);
    latents = ops::flip(latents, 1);
    latents = f == 0 ? run_elementwise_affine_reverse(store, flow, latents, mask)
                     : run_conv_flow_reverse(c, store, flow, latents, mask, x);
  }
  return ops::narrow(latents, 1, 0, 1);
}

Tensor predict_plain(const io::VitsConfig& c, const ParameterStore& store, const Tensor& hidden, const Tensor& mask,
                     const Tensor& speaker) {
  const std::string p = kPrefix;
  const int padding = c.duration_predictor_kernel_size / 2;
  Tensor x = hidden;
  if (speaker.defined()) x = ops::add(x, conv1d(store, p + ".cond", speaker.detach()));
  x = ops::relu(conv1d(store, p + ".conv_1", ops::mul(x, mask), padding));
  x = layer_norm_channels(store, p + ".norm_1", x, c.layer_norm_eps);
  x = ops::relu(conv1d(store, p + ".conv_2", ops::mul(x, mask), padding));
  x = layer_norm_channels(store, p + ".norm_2", x, c.layer_norm_eps);
  x = conv1d(store, p + ".proj", ops::mul(x, mask));
  return ops::mul(x, mask);
}

}  // namespace

void declare_duration_predictor(const io::VitsConfig& config, ParameterStore& store) {
  if (config.use_stochastic_duration_prediction)
    declare_stochastic(config, store);
  else
    declare_plain(config, store);
}

Tensor predict_log_durations(const io::VitsConfig& config, const ParameterStore& store, const Tensor& hidden,
                             const Tensor& mask, const Tensor& speaker, const Tensor& noise,
                             double noise_scale_duration) {
  VC_CHECK(hidden.ndim() == 3 && hidden.dim(1) == config.hidden_size,
           "duration_predictor: hidden states must be [B, " << config.hidden_size << ", T], got "
                                                            << hidden.describe());
  const int64_t B = hidden.dim(0), T = hidden.dim(2);
  VC_CHECK(mask.shape() == Shape({B, 1, T}),
           "duration_predictor: mask must be " << shape_str({B, 1, T}) << ", got " << mask.describe());
  if (speaker.defined()) {
    VC_CHECK(config.speaker_embedding_size != 0,
             "duration_predictor: a speaker embedding was given but the config has speaker_embedding_size 0");
    VC_CHECK(speaker.shape() == Shape({B, config.speaker_embedding_size, 1}),
             "duration_predictor: speaker embedding must be "
                 << shape_str({B, config.speaker_embedding_size, 1}) << ", got " << speaker.describe());
  }
  // Both predictors detach their input: the duration loss does not train the text encoder.
  const Tensor detached = hidden.detach();
  if (config.use_stochastic_duration_prediction)
    return predict_stochastic(config, store, detached, mask, speaker, noise, noise_scale_duration);
  return predict_plain(config, store, detached, mask, speaker);
}

}  // namespace vitscuda::model
