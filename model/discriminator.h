// The VITS discriminator of finetune-hf-vits' full objective (utils/modeling_vits_training.py:
// VitsDiscriminator, VitsHifiGanDiscriminatorScaleResidualBlock / PeriodResidualBlock; original VITS'
// MultiPeriodDiscriminator): one scale discriminator on the raw waveform (when the config has scale
// channels) followed by one period discriminator per configured period.
//
// Parameters live in a ParameterStore of their own (the discriminator has its own optimiser), named as
// finetune-hf-vits names them: discriminator.discriminators.{i}.convs.{j}.* and ...{i}.final_conv.*, i = 0
// the scale discriminator (when present), then the periods in config order. Every conv is weight-normed
// for training (dim 0): its trainable parameters are weight_g ([out, 1, 1] or [out, 1, 1, 1]) and weight_v
// (the conv weight's shape: [out, in/groups, k] for the scale convs, [out, in, k, 1] for the period
// convs), plus the bias.
//
// Layout of the period discriminators: a (k, 1) Conv2d over [B, C, H, p] is a Conv1d over each of the p
// columns, so the waveform (right reflect-padded to a multiple of p) is folded into [B * p, 1, H] once and
// the whole stack runs as Conv1d on [B * p, C, H]. Their feature maps are returned as [B, p, C, H] (torch's
// [B, C, H, p] with the column axis moved ahead of the channels) and their scores flattened column by
// column ([B, p * H], torch: [B, H * p] row by row). The losses (means over all elements) do not depend on
// the order; tests/model/test_discriminator.cpp permutes torch's tensors to compare.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace vitscuda::model {

struct DiscriminatorOutput {
  // Per sub-discriminator: the final conv's output flattened to [B, n_k].
  std::vector<Tensor> scores;
  // Per sub-discriminator: each conv's output after LeakyReLU, then the final conv's output.
  std::vector<std::vector<Tensor>> feature_maps;
};

class Discriminator {
 public:
  explicit Discriminator(io::VitsConfig config);  // declares and allocates every parameter (zeros)

  const io::VitsConfig& config() const { return config_; }
  ParameterStore& params() { return store_; }
  const ParameterStore& params() const { return store_; }
  void to(Device device) { store_.to(device); }
  Device device() const { return store_.device(); }

  // PyTorch's default conv initialisation (weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
  // in/groups * kernel), then weight norm applied the way torch applies it: v = that weight, g = ||v||
  // per output channel, so the effective weight is the initialised one.
  void initialize(uint64_t seed);

  int num_discriminators() const { return static_cast<int>(names_.size()); }
  // "scale", "period_2", ...: for logs.
  const std::string& name(int k) const { return names_.at(static_cast<size_t>(k)); }
  bool has_scale_discriminator() const { return !config_.discriminator_scale_channels.empty(); }

  // waveform [B, 1, N] (or [B, N]) on the parameters' device. Recorded on the current tape when the
  // waveform needs a gradient or the parameters are trainable.
  DiscriminatorOutput forward(const Tensor& waveform) const;

 private:
  Tensor scale_forward(int index, const Tensor& x, std::vector<Tensor>& fmaps) const;
  Tensor period_forward(int index, int period, const Tensor& x, std::vector<Tensor>& fmaps) const;

  io::VitsConfig config_;
  ParameterStore store_;
  std::vector<std::string> names_;
};

// Floating-point operations of one forward over `batch` waveforms of `samples` samples: 2 per multiply-add of
// every conv (bias, LeakyReLU and weight norm not counted). For benchmarks.
double discriminator_forward_flops(const io::VitsConfig& config, int64_t batch, int64_t samples);

// Declares the discriminator's parameters (weight-normed, legacy weight_g / weight_v names).
void declare_discriminator(const io::VitsConfig& config, ParameterStore& store);

// The prefix of every discriminator tensor in a finetune-hf-vits "-train" checkpoint and in vitscuda's
// discriminator.safetensors.
inline const std::string kDiscriminatorPrefix = "discriminator.";

// How a checkpoint stores the discriminator's conv weights.
enum class DiscriminatorLayout {
  Plain,             // `weight` (weight norm removed, as finetune-hf-vits' save_pretrained writes them)
  Legacy,            // weight_g / weight_v (torch.nn.utils.weight_norm)
  Parametrizations,  // parametrizations.weight.original0 / original1 (torch.nn.utils.parametrizations)
};
const char* discriminator_layout_name(DiscriminatorLayout layout);
DiscriminatorLayout parse_discriminator_layout(const std::string& name);

// What reading the discriminator tensors of a file found.
struct DiscriminatorImport {
  DiscriminatorLayout layout = DiscriminatorLayout::Plain;
  std::map<std::string, std::string> source_dtypes;  // canonical name (weight_g / weight_v / bias) -> file dtype
  int tensors = 0;                                   // discriminator tensors read
};

// Whether `file` holds any tensor named discriminator.*.
bool has_discriminator_tensors(const io::SafetensorsFile& file);

// Loads every discriminator.* tensor of `file` into `disc` (other tensors are ignored). Plain weights W
// become v = W and g = ||W|| (per output channel, accumulated in double), as torch's weight_norm does.
// Throws, naming the file and every offending tensor, when one is missing, unexpected, of another shape
// than the config gives (with both shapes), of an unsupported dtype, or when layouts are mixed.
DiscriminatorImport import_discriminator(const io::SafetensorsFile& file, Discriminator& disc);

// The discriminator's tensors in `layout` (Plain folds W = g * v / ||v|| per output channel; where g is
// the float rounding of ||v||, as after importing plain weights, W is v itself, since the exact fold differs
// from v by less than that rounding), each in dtypes[canonical name] (default F32), in declaration order.
std::vector<io::SafetensorsWriteEntry> discriminator_entries(const Discriminator& disc, DiscriminatorLayout layout,
                                                             const std::map<std::string, std::string>& dtypes);

// vitscuda's model directory keeps the discriminator beside the generator in this file: weight_g / weight_v /
// bias in F32 (the trainable form), with the source checkpoint's layout and dtypes in its metadata
// (kDiscriminatorLayoutKey, kDiscriminatorDtypesKey) for `weights_convert export --with-discriminator`.
inline const std::string kDiscriminatorFileName = "discriminator.safetensors";
inline const std::string kDiscriminatorLayoutKey = "vitscuda.discriminator_source_layout";
inline const std::string kDiscriminatorDtypesKey = "vitscuda.discriminator_source_dtypes";

void save_discriminator_file(const std::string& path, const Discriminator& disc,
                             const std::map<std::string, std::string>& metadata);
// A discriminator built from `config`, loaded from `path` (any layout; errors name the file and tensors).
std::unique_ptr<Discriminator> load_discriminator_file(const std::string& path, const io::VitsConfig& config);

}  // namespace vitscuda::model
