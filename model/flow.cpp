#include "model/flow.h"

#include <string>

#include "engine/ops.h"
#include "model/layers.h"
#include "model/wavenet.h"

namespace vitscuda::model {

void declare_flow(const io::VitsConfig& c, ParameterStore& store) {
  const int half = c.flow_size / 2;
  for (int f = 0; f < c.prior_encoder_num_flows; ++f) {
    const std::string p = "flow.flows." + std::to_string(f);
    declare_conv1d(store, p + ".conv_pre", half, c.hidden_size, 1);
    declare_wavenet(c, store, p + ".wavenet", c.prior_encoder_num_wavenet_layers);
    declare_conv1d(store, p + ".conv_post", c.hidden_size, half, 1);
  }
}

namespace {
// The coupling layer's mean: conv_pre(first half) -> WaveNet -> conv_post, masked.
Tensor coupling_mean(const io::VitsConfig& c, const ParameterStore& store, const std::string& p, const Tensor& first,
                     const Tensor& mask, const Tensor& speaker) {
  Tensor h = ops::mul(conv1d(store, p + ".conv_pre", first), mask);
  h = run_wavenet(c, store, p + ".wavenet", c.prior_encoder_num_wavenet_layers, h, mask, speaker);
  return ops::mul(conv1d(store, p + ".conv_post", h), mask);
}
}  // namespace

Tensor run_flow_forward(const io::VitsConfig& c, const ParameterStore& store, const Tensor& z, const Tensor& mask,
                        const Tensor& speaker) {
  const int half = c.flow_size / 2;
  Tensor x = z;
  for (int f = 0; f < c.prior_encoder_num_flows; ++f) {
    const std::string p = "flow.flows." + std::to_string(f);
    Tensor first = ops::narrow(x, 1, 0, half);
    Tensor second = ops::narrow(x, 1, half, half);
    // second' = mean + second * exp(0) * mask
    second = ops::add(coupling_mean(c, store, p, first, mask, speaker), ops::mul(second, mask));
    x = ops::flip(ops::cat({first, second}, 1), 1);
  }
  return x;
}

Tensor run_flow_reverse(const io::VitsConfig& c, const ParameterStore& store, const Tensor& z, const Tensor& mask,
                        const Tensor& speaker) {
  const int half = c.flow_size / 2;
  Tensor x = z;
  for (int f = c.prior_encoder_num_flows - 1; f >= 0; --f) {
    const std::string p = "flow.flows." + std::to_string(f);
    x = ops::flip(x, 1);
    Tensor first = ops::narrow(x, 1, 0, half);
    Tensor second = ops::narrow(x, 1, half, half);
    Tensor mean = coupling_mean(c, store, p, first, mask, speaker);
    // The coupling's log-scale is zero in VITS's mean-only flow, so the inverse is a shift.
    second = ops::mul(ops::sub(second, mean), mask);
    x = ops::cat({first, second}, 1);
  }
  return x;
}

}  // namespace vitscuda::model
