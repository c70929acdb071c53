#include "engine/parameters.h"

#include <cmath>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/random.h"

namespace vitscuda {

void ParameterStore::declare(const std::string& name, const Shape& shape, ParameterInit init) {
  VC_CHECK(!finalized(), "parameter '" << name << "' declared after the parameter store was finalised");
  VC_CHECK(index_.count(name) == 0, "parameter '" << name << "' declared twice");
  ParameterInfo info;
  info.name = name;
  info.shape = shape;
  info.offset = (total_ + kParameterAlignment - 1) / kParameterAlignment * kParameterAlignment;
  info.init = std::move(init);
  info.module = name.substr(0, name.find('.'));
  total_ = info.offset + shape_numel(shape);
  index_[name] = params_.size();
  params_.push_back(std::move(info));
}

void ParameterStore::finalize() {
  VC_CHECK(!finalized(), "parameter store finalised twice");
  flat_ = Tensor::zeros({total_});
}

void ParameterStore::to(Device device) {
  VC_CHECK(finalized(), "parameter store moved to " << device_name(device) << " before finalize()");
  if (device == flat_.device()) return;
  flat_ = flat_.to(device);
  if (grads_.defined()) {
    grads_ = grads_.to(device);
    for (size_t i = 0; i < params_.size(); ++i)
      if (slots_[i]) {
        slots_[i]->device = device;
        slots_[i]->grad = Tensor::view_of(grads_.storage(), static_cast<size_t>(params_[i].offset), params_[i].shape,
                                          grads_.dtype());
      }
  }
}

bool ParameterStore::has(const std::string& name) const { return index_.count(name) != 0; }

const ParameterInfo& ParameterStore::info(const std::string& name) const {
  auto it = index_.find(name);
  VC_CHECK(it != index_.end(), "unknown parameter '" << name << "'");
  return params_[it->second];
}

Tensor ParameterStore::get(const std::string& name) const {
  VC_CHECK(finalized(), "parameter '" << name << "' read before the parameter store was finalised");
  const ParameterInfo& p = info(name);
  Tensor t = Tensor::view_of(flat_.storage(), flat_.offset() + static_cast<size_t>(p.offset), p.shape, flat_.dtype());
  if (!slots_.empty()) t.set_grad_slot(slots_[index_.at(name)]);
  return t;
}

void ParameterStore::enable_grad(const std::function<bool(const std::string&)>& trainable) {
  VC_CHECK(finalized(), "enable_grad() before finalize()");
  grads_ = Tensor::zeros({total_}, flat_.dtype(), flat_.device());
  slots_.assign(params_.size(), nullptr);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!trainable(params_[i].name)) continue;
    auto slot = std::make_shared<autograd::GradSlot>();
    slot->shape = params_[i].shape;
    slot->dtype = flat_.dtype();
    slot->device = flat_.device();
    slot->is_parameter = true;
    slot->grad = Tensor::view_of(grads_.storage(), static_cast<size_t>(params_[i].offset), params_[i].shape, grads_.dtype());
    slots_[i] = std::move(slot);
  }
}

bool ParameterStore::trainable(const std::string& name) const {
  auto it = index_.find(name);
  VC_CHECK(it != index_.end(), "unknown parameter '" << name << "'");
  return !slots_.empty() && slots_[it->second] != nullptr;
}

Tensor ParameterStore::grad(const std::string& name) const {
  VC_CHECK(grad_enabled(), "gradient of '" << name << "' asked for before enable_grad()");
  const ParameterInfo& p = info(name);
  return Tensor::view_of(grads_.storage(), static_cast<size_t>(p.offset), p.shape, grads_.dtype());
}

void ParameterStore::zero_grad() {
  if (grads_.defined()) grads_.fill(0.0);
}

int64_t ParameterStore::count() const {
  int64_t n = 0;
  for (const ParameterInfo& p : params_) n += shape_numel(p.shape);
  return n;
}

int64_t ParameterStore::trainable_count() const {
  int64_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    if (!slots_.empty() && slots_[i]) n += shape_numel(params_[i].shape);
  return n;
}

void ParameterStore::initialize(uint64_t seed) {
  VC_CHECK(finalized(), "initialize() before finalize()");
  Rng rng(seed);
  // Weight-norm magnitudes depend on their v, so they are filled in a second pass.
  for (const ParameterInfo& p : params_) {
    Tensor t = get(p.name);
    switch (p.init.kind) {
      case InitKind::Zeros: t.fill(0.0); break;
      case InitKind::Ones: t.fill(1.0); break;
      case InitKind::Normal: {
        rng.fill_normal(t);
        float* d = t.data<float>();
        for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<float>(d[i] * p.init.value);
        break;
      }
      case InitKind::KaimingNormal: {
        VC_CHECK(p.shape.size() >= 2, "kaiming init of '" << p.name << "' needs >= 2 dims, got " << shape_str(p.shape));
        int64_t fan_in = 1;
        for (size_t i = 1; i < p.shape.size(); ++i) fan_in *= p.shape[i];
        const double std = std::sqrt(2.0 / static_cast<double>(fan_in));
        rng.fill_normal(t);
        float* d = t.data<float>();
        for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<float>(d[i] * std);
        break;
      }
      case InitKind::Uniform: rng.fill_uniform(t, -p.init.value, p.init.value); break;
      case InitKind::WeightNormG: break;
    }
  }
  for (const ParameterInfo& p : params_) {
    if (p.init.kind != InitKind::WeightNormG) continue;
    Tensor g = get(p.name);
    Tensor v = get(p.init.norm_of);
    VC_CHECK(v.dim(0) == g.dim(0), "weight_g '" << p.name << "' does not match '" << p.init.norm_of << "'");
    const int64_t rows = v.dim(0), cols = v.numel() / rows;
    const float* vd = v.data<float>();
    float* gd = g.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(vd[r * cols + c]) * vd[r * cols + c];
      gd[r] = static_cast<float>(std::sqrt(s));
    }
  }
}

std::vector<std::pair<std::string, int64_t>> ParameterStore::counts_by_module() const {
  std::vector<std::pair<std::string, int64_t>> out;
  std::map<std::string, size_t> position;
  for (const ParameterInfo& p : params_) {
    auto it = position.find(p.module);
    if (it == position.end()) {
      it = position.emplace(p.module, out.size()).first;
      out.emplace_back(p.module, 0);
    }
    out[it->second].second += shape_numel(p.shape);
  }
  return out;
}

}  // namespace vitscuda
