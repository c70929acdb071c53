#include "model/duration_predictor.h"

#include <cmath>
#include <string>
#include <utility>
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

// [B, C, T] -> [B]: torch.sum(x, [1, 2]).
Tensor sum_over_channels_and_time(const Tensor& x) { return ops::sum(ops::sum(x, 2, false), 1, false); }

// Forward y = (translate + exp(log_scale) * x) * mask, with log|det| = sum(log_scale * mask) per item ([B]).
std::pair<Tensor, Tensor> run_elementwise_affine(const ParameterStore& store, const std::string& p, const Tensor& x,
                                                 const Tensor& mask) {
  const Tensor log_scale = store.get(p + ".log_scale");
  Tensor y = ops::mul(ops::add(store.get(p + ".translate"), ops::mul(ops::exp(log_scale), x)), mask);
  return {y, sum_over_channels_and_time(ops::mul(log_scale, mask))};
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

// The first half conditions a rational-quadratic spline that transforms the second half (forward) or
// inverts it (reverse). Returns the output and, forward only, log|det| summed over unmasked values ([B]).
std::pair<Tensor, Tensor> run_conv_flow(const io::VitsConfig& c, const ParameterStore& store, const std::string& p,
                                        const Tensor& x, const Tensor& mask, const Tensor& conditioning,
                                        bool reverse) {
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

  auto [transformed, log_abs_det] = ops::rational_quadratic_spline(second.reshape({n}), widths, heights, derivatives,
                                                                   reverse, c.duration_predictor_tail_bound);
  Tensor y = ops::mul(ops::cat({first, transformed.reshape({B, half, T})}, 1), mask);
  if (reverse) return {y, Tensor()};
  return {y, sum_over_channels_and_time(ops::mul(log_abs_det.reshape({B, half, T}), mask))};
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

// The stochastic predictor's conditioning from the text (and speaker): conv_pre, + cond(speaker), the
// depth-separable block, conv_proj. [B, H, T].
Tensor run_stochastic_text_branch(const io::VitsConfig& c, const ParameterStore& store, const Tensor& hidden,
                                  const Tensor& mask, const Tensor& speaker) {
  const std::string p = kPrefix;
  Tensor x = conv1d(store, p + ".conv_pre", hidden);
  if (speaker.defined()) x = ops::add(x, conv1d(store, p + ".cond", speaker.detach()));
  x = run_depth_separable_conv(c, store, p + ".conv_dds", x, mask, Tensor());
  return ops::mul(conv1d(store, p + ".conv_proj", x), mask);
}

Tensor predict_stochastic(const io::VitsConfig& c, const ParameterStore& store, const Tensor& hidden,
                          const Tensor& mask, const Tensor& speaker, const Tensor& noise, double noise_scale) {
  const std::string p = kPrefix;
  const int64_t B = hidden.dim(0), T = hidden.dim(2);
  VC_CHECK(noise.defined() && noise.shape() == Shape({B, 2, T}),
           "duration_predictor: noise must be " << shape_str({B, 2, T}) << ", got "
                                                << (noise.defined() ? noise.describe() : std::string("undefined")));

  const Tensor x = run_stochastic_text_branch(c, store, hidden, mask, speaker);

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
                     : run_conv_flow(c, store, flow, latents, mask, x, /*reverse=*/true).first;
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

// log(2 pi), of the standard normal's log-density.
const double kLogTwoPi = std::log(2.0 * M_PI);

// sum over channels and unmasked times of -log N(z; 0, 1) = 0.5 (log 2 pi + z^2): [B].
Tensor standard_normal_nll(const Tensor& z, const Tensor& mask) {
  return sum_over_channels_and_time(ops::mul(ops::scale(ops::add_scalar(ops::mul(z, z), kLogTwoPi), 0.5), mask));
}

// The flow order of finetune-hf-vits and original VITS: the ElementwiseAffine first, without a flip
// after it, then each ConvFlow followed by a channel flip. (transformers' own forward also flips after
// the ElementwiseAffine, so each ConvFlow sees the other channel and the loss differs; inference is the
// same in both.) Returns the flowed latents and the summed log|det| ([B]).
std::pair<Tensor, Tensor> run_flows_forward(const io::VitsConfig& c, const ParameterStore& store,
                                            const std::string& flows, Tensor latents, const Tensor& mask,
                                            const Tensor& conditioning) {
  auto [affine_out, log_det] = run_elementwise_affine(store, flows + ".0", latents, mask);
  latents = affine_out;
  for (int f = 1; f <= c.duration_predictor_num_flows; ++f) {
    auto [flowed, flow_log_det] =
        run_conv_flow(c, store, flows + "." + std::to_string(f), latents, mask, conditioning, /*reverse=*/false);
    latents = ops::flip(flowed, 1);
    log_det = ops::add(log_det, flow_log_det);
  }
  return {latents, log_det};
}

// VitsStochasticDurationPredictor.forward(reverse=False) of finetune-hf-vits: nll + log q per item.
Tensor stochastic_loss(const io::VitsConfig& c, const ParameterStore& store, const Tensor& hidden, const Tensor& mask,
                       const Tensor& speaker, const Tensor& durations, const Tensor& noise) {
  const std::string p = kPrefix;
  const Tensor x = run_stochastic_text_branch(c, store, hidden, mask, speaker);

  // Posterior branch: conditioning from the durations.
  Tensor h = conv1d(store, p + ".post_conv_pre", durations);
  h = run_depth_separable_conv(c, store, p + ".post_conv_dds", h, mask, Tensor());
  h = ops::mul(conv1d(store, p + ".post_conv_proj", h), mask);

  // q(u, nu | w): the posterior flows carry e_q to (z_u, z1); u = sigmoid(z_u) in (0, 1) dequantises w.
  const Tensor e_q = ops::mul(noise.detach(), mask);
  auto [posterior, log_det_q] = run_flows_forward(c, store, p + ".post_flows", e_q, mask, ops::add(x, h));
  const Tensor z_u = ops::narrow(posterior, 1, 0, 1);
  const Tensor z1 = ops::narrow(posterior, 1, 1, 1);
  // logsigmoid(z_u) + logsigmoid(-z_u) = -(softplus(-z_u) + softplus(z_u)): the log|det| of the sigmoid.
  const Tensor sigmoid_log_det = ops::scale(ops::add(ops::softplus(ops::scale(z_u, -1.0)), ops::softplus(z_u)), -1.0);
  log_det_q = ops::add(log_det_q, sum_over_channels_and_time(ops::mul(sigmoid_log_det, mask)));
  const Tensor log_q = ops::sub(ops::scale(standard_normal_nll(e_q, mask), -1.0), log_det_q);

  // The "Log" flow: z0 = log(w - u), with log|det| = -sum z0.
  Tensor z0 = ops::mul(ops::sub(durations, ops::sigmoid(z_u)), mask);
  z0 = ops::mul(ops::log(ops::clamp_min(z0, 1e-5)), mask);
  const Tensor log_flow_log_det = ops::scale(sum_over_channels_and_time(z0), -1.0);

  auto [latents, log_det] = run_flows_forward(c, store, p + ".flows", ops::cat({z0, z1}, 1), mask, x);
  log_det = ops::add(log_det, log_flow_log_det);
  const Tensor nll = ops::sub(standard_normal_nll(latents, mask), log_det);
  return ops::add(nll, log_q);
}

// VitsDurationPredictor's loss: sum over tokens of (prediction - log(w + 1e-6))^2, padding excluded.
Tensor plain_loss(const io::VitsConfig& c, const ParameterStore& store, const Tensor& hidden, const Tensor& mask,
                  const Tensor& speaker, const Tensor& durations) {
  const Tensor target = ops::mul(ops::log(ops::add_scalar(durations.detach(), 1e-6)), mask);
  const Tensor error = ops::sub(predict_plain(c, store, hidden, mask, speaker), target);
  return sum_over_channels_and_time(ops::mul(ops::mul(error, error), mask));
}

// Shapes shared by inference and the loss; the noise is checked where it is used.
void check_inputs(const io::VitsConfig& config, const Tensor& hidden, const Tensor& mask, const Tensor& speaker) {
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
  check_inputs(config, hidden, mask, speaker);
  // Both predictors detach their input: the duration loss does not train the text encoder.
  const Tensor detached = hidden.detach();
  if (config.use_stochastic_duration_prediction)
    return predict_stochastic(config, store, detached, mask, speaker, noise, noise_scale_duration);
  return predict_plain(config, store, detached, mask, speaker);
}

Tensor duration_predictor_loss(const io::VitsConfig& config, const ParameterStore& store, const Tensor& hidden,
                               const Tensor& mask, const Tensor& speaker, const Tensor& durations,
                               const Tensor& noise) {
  check_inputs(config, hidden, mask, speaker);
  const int64_t B = hidden.dim(0), T = hidden.dim(2);
  VC_CHECK(durations.defined() && durations.shape() == Shape({B, 1, T}),
           "duration_predictor_loss: durations must be "
               << shape_str({B, 1, T}) << ", got "
               << (durations.defined() ? durations.describe() : std::string("undefined")));
  const Tensor detached = hidden.detach();
  if (!config.use_stochastic_duration_prediction)
    return plain_loss(config, store, detached, mask, speaker, durations);
  VC_CHECK(noise.defined() && noise.shape() == Shape({B, 2, T}),
           "duration_predictor_loss: noise (e_q) must be "
               << shape_str({B, 2, T}) << ", got " << (noise.defined() ? noise.describe() : std::string("undefined")));
  return stochastic_loss(config, store, detached, mask, speaker, durations.detach(), noise);
}

}  // namespace vitscuda::model
