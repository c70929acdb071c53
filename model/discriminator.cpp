#include "model/discriminator.h"

#include <cmath>
#include <set>

#include "common/error.h"
#include "engine/ops.h"

namespace vitscuda::model {

namespace {

// One conv of a sub-discriminator, as finetune-hf-vits builds it.
struct ConvSpec {
  std::string name;  // discriminator.discriminators.{i}.convs.{j} or ...final_conv
  int cin, cout, kernel, stride, padding, groups;
  bool is_2d;  // a (kernel, 1) Conv2d of a period discriminator
};

std::string sub_prefix(int index) { return kDiscriminatorPrefix + "discriminators." + std::to_string(index) + "."; }

// The scale discriminator's convs (VitsHifiGanDiscriminatorScaleResidualBlock), final conv last.
std::vector<ConvSpec> scale_convs(const io::VitsConfig& c, int index) {
  const std::vector<int>& ch = c.discriminator_scale_channels;
  const std::string p = sub_prefix(index) + "convs.";
  std::vector<ConvSpec> convs;
  convs.push_back({p + "0", ch[0], ch[1], 15, 1, 7, 1, false});
  const size_t n = ch.size();
  for (size_t j = 1; j + 1 < n; ++j)
    convs.push_back({p + std::to_string(j), ch[j], ch[j + 1], 41, 4, 20, c.discriminator_scale_groups(int(j)), false});
  const int last = ch.back();
  convs.push_back({p + std::to_string(n - 1), last, last, 41, 4, 20, c.discriminator_scale_groups(int(n - 1)), false});
  convs.push_back({p + std::to_string(n), last, last, 5, 1, 2, 1, false});
  convs.push_back({sub_prefix(index) + "final_conv", last, 1, 3, 1, 1, 1, false});
  return convs;
}

// A period discriminator's convs (VitsHifiGanDiscriminatorPeriodResidualBlock), final conv last.
std::vector<ConvSpec> period_convs(const io::VitsConfig& c, int index) {
  const std::vector<int>& ch = c.discriminator_period_channels;
  const std::string p = sub_prefix(index) + "convs.";
  const int k = c.discriminator_kernel_size, pad = (k - 1) / 2;  // get_padding(kernel_size, 1)
  std::vector<ConvSpec> convs;
  for (size_t j = 0; j + 1 < ch.size(); ++j)
    convs.push_back({p + std::to_string(j), ch[j], ch[j + 1], k, c.discriminator_stride, pad, 1, true});
  const int last = ch.back();
  convs.push_back({p + std::to_string(ch.size() - 1), last, last, k, 1, pad, 1, true});
  convs.push_back({sub_prefix(index) + "final_conv", last, 1, 3, 1, 1, 1, true});
  return convs;
}

// Every sub-discriminator's convs, in the checkpoint's order (scale first when present).
std::vector<std::vector<ConvSpec>> all_convs(const io::VitsConfig& c) {
  std::vector<std::vector<ConvSpec>> out;
  int index = 0;
  if (!c.discriminator_scale_channels.empty()) out.push_back(scale_convs(c, index++));
  for (size_t i = 0; i < c.discriminator_periods.size(); ++i) out.push_back(period_convs(c, index++));
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip(const std::string& s, const std::string& suffix) { return s.substr(0, s.size() - suffix.size()); }

// ||v|| per output channel (dim 0), accumulated in double as ParameterStore::initialize does for weight_g.
std::vector<double> row_norms(const Tensor& v) {
  const Tensor h = v.to(Device::CPU);
  const int64_t rows = h.dim(0), cols = h.numel() / rows;
  const float* d = h.data<float>();
  std::vector<double> norms(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(d[r * cols + c]) * d[r * cols + c];
    norms[static_cast<size_t>(r)] = std::sqrt(s);
  }
  return norms;
}

// The folded weight g * v / ||v|| on the host; rows whose g is the float rounding of ||v|| are v itself.
Tensor fold_weight_norm(const Tensor& g, const Tensor& v) {
  const Tensor gh = g.to(Device::CPU), vh = v.to(Device::CPU);
  const std::vector<double> norms = row_norms(vh);
  Tensor w = vh.clone();
  const int64_t rows = vh.dim(0), cols = vh.numel() / rows;
  const float* gd = gh.data<float>();
  float* wd = w.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const double n = norms[static_cast<size_t>(r)];
    if (static_cast<float>(n) == gd[r]) continue;
    const double scale = static_cast<double>(gd[r]) / n;
    for (int64_t c = 0; c < cols; ++c) wd[r * cols + c] = static_cast<float>(wd[r * cols + c] * scale);
  }
  return w;
}

}  // namespace

double discriminator_forward_flops(const io::VitsConfig& config, int64_t batch, int64_t samples) {
  double flops = 0;
  const std::vector<std::vector<ConvSpec>> subs = all_convs(config);
  // The sequence each sub-discriminator convolves: the scale one sees the waveform (period 1), a period one
  // p columns of ceil(samples / p) after the right reflect padding.
  std::vector<int64_t> periods;
  if (!config.discriminator_scale_channels.empty()) periods.push_back(1);
  for (int p : config.discriminator_periods) periods.push_back(p);
  for (size_t k = 0; k < subs.size(); ++k) {
    int64_t length = (samples + periods[k] - 1) / periods[k];
    const double rows = static_cast<double>(batch) * periods[k];
    for (const ConvSpec& s : subs[k]) {
      length = (length + 2 * s.padding - s.kernel) / s.stride + 1;
      flops += 2.0 * rows * s.cout * static_cast<double>(length) * (s.cin / s.groups) * s.kernel;
    }
  }
  return flops;
}

void declare_discriminator(const io::VitsConfig& config, ParameterStore& store) {
  for (const std::vector<ConvSpec>& convs : all_convs(config))
    for (const ConvSpec& s : convs) {
      const int fan_in = s.cin / s.groups * s.kernel;
      // torch's default Conv init: kaiming_uniform_(a = sqrt(5)) = U(+-1/sqrt(fan_in)); bias likewise.
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      const Shape g_shape = s.is_2d ? Shape{s.cout, 1, 1, 1} : Shape{s.cout, 1, 1};
      const Shape v_shape = s.is_2d ? Shape{s.cout, s.cin, s.kernel, 1} : Shape{s.cout, s.cin / s.groups, s.kernel};
      store.declare(s.name + ".weight_g", g_shape, {InitKind::WeightNormG, 0.0, s.name + ".weight_v"});
      store.declare(s.name + ".weight_v", v_shape, {InitKind::Uniform, bound});
      store.declare(s.name + ".bias", {s.cout}, {InitKind::Uniform, bound});
    }
}

Discriminator::Discriminator(io::VitsConfig config) : config_(std::move(config)) {
  config_.validate("discriminator config");
  declare_discriminator(config_, store_);
  store_.finalize();
  if (has_scale_discriminator()) names_.push_back("scale");
  for (int p : config_.discriminator_periods) names_.push_back("period_" + std::to_string(p));
}

void Discriminator::initialize(uint64_t seed) { store_.initialize(seed); }

namespace {

Tensor apply_conv(const ParameterStore& store, const ConvSpec& s, const Tensor& x) {
  Tensor w = ops::weight_norm(store.get(s.name + ".weight_g"), store.get(s.name + ".weight_v"));
  if (s.is_2d) w = w.reshape({s.cout, s.cin, s.kernel});
  return ops::conv1d(x, w, store.get(s.name + ".bias"), s.stride, s.padding, s.padding, 1, s.groups);
}

}  // namespace

Tensor Discriminator::scale_forward(int index, const Tensor& x, std::vector<Tensor>& fmaps) const {
  const std::vector<ConvSpec> convs = scale_convs(config_, index);
  Tensor h = x;
  for (size_t j = 0; j + 1 < convs.size(); ++j) {
    h = ops::leaky_relu(apply_conv(store_, convs[j], h), config_.leaky_relu_slope);
    fmaps.push_back(h);
  }
  h = apply_conv(store_, convs.back(), h);
  fmaps.push_back(h);
  return h.reshape({h.dim(0), h.dim(2)});
}

Tensor Discriminator::period_forward(int index, int period, const Tensor& x, std::vector<Tensor>& fmaps) const {
  const std::vector<ConvSpec> convs = period_convs(config_, index);
  const int64_t B = x.dim(0), N = x.dim(2);
  Tensor padded = x;
  if (N % period != 0) {
    VC_CHECK(period - N % period < N, "discriminator: a waveform of " << N << " samples is too short for period "
                                                                      << period << " (reflect padding)");
    padded = ops::reflect_pad(x, 0, period - N % period);
  }
  const int64_t H = padded.dim(2) / period;
  // [B, 1, H * p] viewed as [B, H, p] -> columns first [B, p, H] -> one Conv1d sequence per column.
  Tensor h = ops::transpose(padded.reshape({B, H, period}), 1, 2).reshape({B * period, 1, H});
  for (size_t j = 0; j + 1 < convs.size(); ++j) {
    h = ops::leaky_relu(apply_conv(store_, convs[j], h), config_.leaky_relu_slope);
    fmaps.push_back(h.reshape({B, period, h.dim(1), h.dim(2)}));
  }
  h = apply_conv(store_, convs.back(), h);
  fmaps.push_back(h.reshape({B, period, 1, h.dim(2)}));
  return h.reshape({B, period * h.dim(2)});
}

DiscriminatorOutput Discriminator::forward(const Tensor& waveform) const {
  VC_CHECK(waveform.defined() && (waveform.ndim() == 2 || (waveform.ndim() == 3 && waveform.dim(1) == 1)),
           "discriminator: the waveform must be [B, 1, N] or [B, N], got "
               << (waveform.defined() ? waveform.describe() : std::string("an undefined tensor")));
  const Tensor x = waveform.ndim() == 2 ? waveform.reshape({waveform.dim(0), 1, waveform.dim(1)}) : waveform;
  DiscriminatorOutput out;
  int index = 0;
  if (has_scale_discriminator()) {
    out.feature_maps.emplace_back();
    out.scores.push_back(scale_forward(index++, x, out.feature_maps.back()));
  }
  for (int p : config_.discriminator_periods) {
    out.feature_maps.emplace_back();
    out.scores.push_back(period_forward(index++, p, x, out.feature_maps.back()));
  }
  return out;
}

// ------------------------------------------------------------------ checkpoints

const char* discriminator_layout_name(DiscriminatorLayout layout) {
  switch (layout) {
    case DiscriminatorLayout::Plain: return "plain";
    case DiscriminatorLayout::Legacy: return "legacy";
    case DiscriminatorLayout::Parametrizations: return "parametrizations";
  }
  return "?";
}

DiscriminatorLayout parse_discriminator_layout(const std::string& name) {
  if (name == "plain") return DiscriminatorLayout::Plain;
  if (name == "legacy") return DiscriminatorLayout::Legacy;
  if (name == "parametrizations") return DiscriminatorLayout::Parametrizations;
  VC_FAIL("unknown discriminator weight layout '" << name << "' (expected plain, legacy or parametrizations)");
}

bool has_discriminator_tensors(const io::SafetensorsFile& file) {
  for (const io::SafetensorsEntry& e : file.entries())
    if (e.name.compare(0, kDiscriminatorPrefix.size(), kDiscriminatorPrefix) == 0) return true;
  return false;
}

DiscriminatorImport import_discriminator(const io::SafetensorsFile& file, Discriminator& disc) {
  ParameterStore& store = disc.params();
  ImportReport report;
  DiscriminatorImport result;
  std::set<DiscriminatorLayout> layouts;
  std::map<std::string, std::string> plain_weights;  // conv name -> file name of its plain weight
  std::map<std::string, std::string> direct;         // canonical parameter -> file name
  std::set<std::string> found;
  for (const io::SafetensorsEntry& e : file.entries()) {
    if (e.name.compare(0, kDiscriminatorPrefix.size(), kDiscriminatorPrefix) != 0) continue;
    ++result.tensors;
    std::string target;  // the store parameter whose shape the tensor must have
    if (ends_with(e.name, ".weight") && store.has(strip(e.name, ".weight") + ".weight_v")) {
      layouts.insert(DiscriminatorLayout::Plain);
      target = strip(e.name, ".weight") + ".weight_v";
    } else {
      target = canonical_parameter_name(e.name);
      if (target != e.name) layouts.insert(DiscriminatorLayout::Parametrizations);
      else if (ends_with(e.name, ".weight_g") || ends_with(e.name, ".weight_v"))
        layouts.insert(DiscriminatorLayout::Legacy);
      if (!store.has(target)) {
        report.unexpected.push_back(e.name);
        continue;
      }
    }
    if (!found.insert(target).second) {
      report.unexpected.push_back(e.name + " (a second copy of " + target + ")");
      continue;
    }
    const ParameterInfo& info = store.info(target);
    if (e.shape != info.shape) {
      report.misshapen.push_back(e.name + ": file " + shape_str(e.shape) + " vs config " + shape_str(info.shape));
      continue;
    }
    if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16" && e.dtype != "F64") {
      report.unsupported.push_back(e.name + ": dtype " + e.dtype);
      continue;
    }
    if (target != canonical_parameter_name(e.name)) {  // a plain weight: stands for both g and v
      plain_weights[strip(e.name, ".weight")] = e.name;
      found.insert(strip(target, "_v") + "_g");
      result.source_dtypes[strip(target, "_v") + "_g"] = e.dtype;
    } else {
      direct[target] = e.name;
    }
    result.source_dtypes[target] = e.dtype;
  }
  for (const ParameterInfo& p : store.params())
    if (!found.count(p.name)) report.missing.push_back(p.name + " " + shape_str(p.shape));
  if (layouts.size() > 1)
    report.unexpected.push_back("(the discriminator's convs mix plain weight, weight_g/weight_v and "
                                "parametrizations.weight.original0/1 names)");
  if (!report.ok())
    VC_FAIL("discriminator tensors of " << report.summary(file.path())
                                        << "\n  (expected the discriminator of the config: scale channels "
                                        << (disc.has_scale_discriminator() ? "present" : "null") << ", periods "
                                        << disc.config().discriminator_periods.size() << ")");
  result.layout = layouts.empty() ? DiscriminatorLayout::Legacy : *layouts.begin();
  for (const auto& [canonical, name] : direct) store.get(canonical).copy_from(file.load_f32(name));
  for (const auto& [conv, name] : plain_weights) {
    // torch.nn.utils.weight_norm on a plain weight: v = W, g = ||W|| per output channel.
    const Tensor w = file.load_f32(name);
    const std::vector<double> norms = row_norms(w);
    Tensor g = Tensor::empty(store.info(conv + ".weight_g").shape);
    float* gd = g.data<float>();
    for (size_t r = 0; r < norms.size(); ++r) gd[r] = static_cast<float>(norms[r]);
    store.get(conv + ".weight_v").copy_from(w);
    store.get(conv + ".weight_g").copy_from(g);
  }
  return result;
}

std::vector<io::SafetensorsWriteEntry> discriminator_entries(const Discriminator& disc, DiscriminatorLayout layout,
                                                             const std::map<std::string, std::string>& dtypes) {
  const ParameterStore& store = disc.params();
  auto dtype_of = [&](const std::string& name) {
    auto it = dtypes.find(name);
    return it == dtypes.end() ? std::string("F32") : it->second;
  };
  std::vector<io::SafetensorsWriteEntry> entries;
  for (const ParameterInfo& p : store.params()) {
    if (layout == DiscriminatorLayout::Plain && ends_with(p.name, ".weight_g")) continue;
    if (layout == DiscriminatorLayout::Plain && ends_with(p.name, ".weight_v")) {
      const std::string conv = strip(p.name, ".weight_v");
      const Tensor w = fold_weight_norm(store.get(conv + ".weight_g"), store.get(p.name));
      const std::string dtype = dtype_of(p.name);
      entries.push_back({conv + ".weight", dtype, p.shape, io::encode_f32(w, dtype)});
      continue;
    }
    const WeightNormLayout wn =
        layout == DiscriminatorLayout::Parametrizations ? WeightNormLayout::Parametrizations : WeightNormLayout::Legacy;
    const std::string dtype = dtype_of(p.name);
    entries.push_back({layout_parameter_name(p.name, wn), dtype, p.shape, io::encode_f32(store.get(p.name), dtype)});
  }
  return entries;
}

void save_discriminator_file(const std::string& path, const Discriminator& disc,
                             const std::map<std::string, std::string>& metadata) {
  io::write_safetensors(path, discriminator_entries(disc, DiscriminatorLayout::Legacy, {}), metadata);
}

std::unique_ptr<Discriminator> load_discriminator_file(const std::string& path, const io::VitsConfig& config) {
  auto disc = std::make_unique<Discriminator>(config);
  import_discriminator(io::SafetensorsFile::open(path), *disc);
  return disc;
}

}  // namespace vitscuda::model
