#include "model/wavenet.h"

#include "engine/ops.h"
#include "model/layers.h"

namespace vitscuda::model {

void declare_wavenet(const io::VitsConfig& c, ParameterStore& store, const std::string& prefix, int num_layers) {
  const int H = c.hidden_size;
  if (c.speaker_embedding_size != 0)
    declare_conv1d(store, prefix + ".cond_layer", c.speaker_embedding_size, 2 * H * num_layers, 1, 1, true, true);
  for (int i = 0; i < num_layers; ++i)
    declare_conv1d(store, prefix + ".in_layers." + std::to_string(i), H, 2 * H, c.wavenet_kernel_size, 1, true, true);
  for (int i = 0; i < num_layers; ++i)
    declare_conv1d(store, prefix + ".res_skip_layers." + std::to_string(i), H, i < num_layers - 1 ? 2 * H : H, 1, 1,
                   true, true);
}

Tensor run_wavenet(const io::VitsConfig& c, const ParameterStore& store, const std::string& prefix, int num_layers,
                   const Tensor& x, const Tensor& mask, const Tensor& speaker) {
  const int H = c.hidden_size;
  Tensor cond;
  if (speaker.defined()) cond = conv1d(store, prefix + ".cond_layer", speaker);  // [B, 2*H*L, 1]
  Tensor inputs = x;
  Tensor outputs;
  int dilation = 1;
  for (int i = 0; i < num_layers; ++i) {
    const int padding = (c.wavenet_kernel_size * dilation - dilation) / 2;
    Tensor h = conv1d(store, prefix + ".in_layers." + std::to_string(i), inputs, padding, dilation);
    if (cond.defined()) h = ops::add(h, ops::narrow(cond, 1, static_cast<int64_t>(i) * 2 * H, 2 * H));
    Tensor acts = ops::gated_tanh_sigmoid(h);
    Tensor res_skip = conv1d(store, prefix + ".res_skip_layers." + std::to_string(i), acts);
    if (i < num_layers - 1) {
      inputs = ops::mul(ops::add(inputs, ops::narrow(res_skip, 1, 0, H)), mask);
      Tensor skip = ops::narrow(res_skip, 1, H, H);
      outputs = outputs.defined() ? ops::add(outputs, skip) : skip;
    } else {
      outputs = outputs.defined() ? ops::add(outputs, res_skip) : res_skip;
    }
    dilation *= c.wavenet_dilation_rate;
  }
  return ops::mul(outputs, mask);
}

}  // namespace vitscuda::model
