#include "model/hifigan.h"

#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "model/layers.h"

namespace vitscuda::model {

namespace {
int hifigan_padding(int kernel, int dilation) { return (kernel * dilation - dilation) / 2; }
}  // namespace

void declare_hifigan(const io::VitsConfig& c, ParameterStore& store) {
  // The upsamplers' and residual blocks' weights start as HiFi-GAN's and VITS' own training does (their
  // init_weights: N(0, 0.01)), not with transformers' kaiming normal: through the residual stack that
  // init drives conv_post's output far into tanh's saturation (a random demo model wrote a constant -1.0),
  // where the waveform's gradient vanishes and a training run from random weights cannot start.
  const ParameterInit hifigan_init{InitKind::Normal, 0.01};
  declare_conv1d(store, "decoder.conv_pre", c.flow_size, c.upsample_initial_channel, 7);
  const size_t ups = c.upsample_rates.size();
  for (size_t i = 0; i < ups; ++i)
    declare_conv_transpose1d(store, "decoder.upsampler." + std::to_string(i), c.upsample_initial_channel >> i,
                             c.upsample_initial_channel >> (i + 1), c.upsample_kernel_sizes[i], hifigan_init);
  int channels = c.upsample_initial_channel;
  int block = 0;
  for (size_t i = 0; i < ups; ++i) {
    channels = c.upsample_initial_channel >> (i + 1);
    for (size_t r = 0; r < c.resblock_kernel_sizes.size(); ++r, ++block) {
      const std::string p = "decoder.resblocks." + std::to_string(block);
      const int k = c.resblock_kernel_sizes[r];
      for (size_t d = 0; d < c.resblock_dilation_sizes[r].size(); ++d)
        declare_conv1d(store, p + ".convs1." + std::to_string(d), channels, channels, k, 1, true, false, hifigan_init);
      for (size_t d = 0; d < c.resblock_dilation_sizes[r].size(); ++d)
        declare_conv1d(store, p + ".convs2." + std::to_string(d), channels, channels, k, 1, true, false, hifigan_init);
    }
  }
  declare_conv1d(store, "decoder.conv_post", channels, 1, 7, 1, /*bias=*/false);
  if (c.speaker_embedding_size != 0)
    declare_conv1d(store, "decoder.cond", c.speaker_embedding_size, c.upsample_initial_channel, 1);
}

Tensor run_hifigan(const io::VitsConfig& c, const ParameterStore& store, const Tensor& z, const Tensor& speaker,
                   bool recompute_resblocks) {
  Tensor h = conv1d(store, "decoder.conv_pre", z, 3);
  if (speaker.defined()) h = ops::add(h, conv1d(store, "decoder.cond", speaker));
  const size_t kernels = c.resblock_kernel_sizes.size();
  for (size_t i = 0; i < c.upsample_rates.size(); ++i) {
    const std::string up = "decoder.upsampler." + std::to_string(i);
    h = ops::leaky_relu(h, c.leaky_relu_slope);
    h = ops::conv_transpose1d(h, store.get(up + ".weight"), store.get(up + ".bias"), c.upsample_rates[i],
                              (c.upsample_kernel_sizes[i] - c.upsample_rates[i]) / 2);
    Tensor sum;
    for (size_t r = 0; r < kernels; ++r) {
      const std::string p = "decoder.resblocks." + std::to_string(i * kernels + r);
      const int k = c.resblock_kernel_sizes[r];
      auto resblock = [&c, &store, p, k, r](const Tensor& input) {
        Tensor x = input;
        for (size_t d = 0; d < c.resblock_dilation_sizes[r].size(); ++d) {
          const int dil = c.resblock_dilation_sizes[r][d];
          Tensor t = ops::leaky_relu(x, c.leaky_relu_slope);
          t = conv1d(store, p + ".convs1." + std::to_string(d), t, hifigan_padding(k, dil), dil);
          t = ops::leaky_relu(t, c.leaky_relu_slope);
          t = conv1d(store, p + ".convs2." + std::to_string(d), t, hifigan_padding(k, 1), 1);
          x = ops::add(t, x);
        }
        return x;
      };
      Tensor x = recompute_resblocks ? autograd::recompute("hifigan resblock", resblock, h) : resblock(h);
      sum = sum.defined() ? ops::add(sum, x) : x;
    }
    h = ops::div(sum, Tensor::full({1}, static_cast<double>(kernels), sum.dtype(), sum.device()));  // as torch: a true division
  }
  // transformers calls leaky_relu with torch's default slope 0.01 here, not the config's.
  h = ops::leaky_relu(h, 0.01);
  h = conv1d(store, "decoder.conv_post", h, 3);
  return ops::tanh(h);
}

}  // namespace vitscuda::model
