#include "model/posterior_encoder.h"

#include "common/error.h"
#include "engine/ops.h"
#include "model/layers.h"
#include "model/wavenet.h"

namespace vitscuda::model {

namespace {
const char* const kPrefix = "posterior_encoder";
}

void declare_posterior_encoder(const io::VitsConfig& c, ParameterStore& store) {
  const std::string p = kPrefix;
  declare_conv1d(store, p + ".conv_pre", c.spectrogram_bins, c.hidden_size, 1);
  declare_wavenet(c, store, p + ".wavenet", c.posterior_encoder_num_wavenet_layers);
  declare_conv1d(store, p + ".conv_proj", c.hidden_size, 2 * c.flow_size, 1);
}

PosteriorOutput run_posterior_encoder(const io::VitsConfig& c, const ParameterStore& store, const Tensor& spectrogram,
                                      const Tensor& mask, const Tensor& speaker, const Tensor& noise) {
  const std::string p = kPrefix;
  VC_CHECK(spectrogram.ndim() == 3 && spectrogram.dim(1) == c.spectrogram_bins,
           "posterior encoder: spectrogram must be [B, " << c.spectrogram_bins << ", T], got " << spectrogram.describe());
  Tensor x = ops::mul(conv1d(store, p + ".conv_pre", spectrogram), mask);
  x = run_wavenet(c, store, p + ".wavenet", c.posterior_encoder_num_wavenet_layers, x, mask, speaker);
  Tensor stats = ops::mul(conv1d(store, p + ".conv_proj", x), mask);
  PosteriorOutput out;
  out.mean = ops::narrow(stats, 1, 0, c.flow_size);
  out.log_std = ops::narrow(stats, 1, c.flow_size, c.flow_size);
  VC_CHECK(noise.shape() == out.mean.shape(),
           "posterior encoder: noise must be " << shape_str(out.mean.shape()) << ", got " << noise.describe());
  out.sample = ops::mul(ops::add(out.mean, ops::mul(noise, ops::exp(out.log_std))), mask);
  return out;
}

}  // namespace vitscuda::model
