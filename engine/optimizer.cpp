#include "engine/optimizer.h"

#include <cmath>
#include <sstream>

#include "common/error.h"

namespace vitscuda {

namespace {

void check_flat(const Tensor& t, const char* what, const char* role) {
  VC_CHECK(t.defined(), what << ": " << role << " tensor is undefined");
  VC_CHECK(t.device() == Device::CPU || t.dtype() == DType::F32,
           what << ": " << role << " " << t.describe() << ": CUDA buffers are float32 only");
}

}  // namespace

std::vector<kernels::AdamRange> adam_ranges_with_boundary(int64_t numel, int64_t boundary, double weight_decay) {
  VC_CHECK(boundary >= 0 && boundary <= numel,
           "weight-decay boundary " << boundary << " is outside [0, " << numel << "]");
  std::vector<kernels::AdamRange> ranges;
  if (boundary > 0) ranges.push_back({0, boundary, weight_decay});
  if (boundary < numel) ranges.push_back({boundary, numel, 0.0});
  return ranges;
}

std::vector<kernels::AdamRange> adam_ranges_for(const ParameterStore& store,
                                                const std::function<bool(const std::string&)>& decays,
                                                double weight_decay) {
  std::vector<kernels::AdamRange> ranges;
  int64_t previous_end = -1;  // where the previous (non-empty) parameter ends in the flat buffer
  for (const ParameterInfo& p : store.params()) {
    const int64_t begin = p.offset, end = p.offset + shape_numel(p.shape);
    if (begin == end) continue;
    // Only alignment padding (always zero) lies between the last range and this parameter when the
    // previous parameter closed that range: one range then covers both.
    const bool adjoins = !ranges.empty() && ranges.back().end == previous_end;
    previous_end = end;
    if (!store.trainable(p.name)) continue;
    const double wd = decays(p.name) ? weight_decay : 0.0;
    if (adjoins && ranges.back().weight_decay == wd)
      ranges.back().end = end;
    else
      ranges.push_back({begin, end, wd});
  }
  return ranges;
}

AdamW::AdamW(int64_t numel, AdamWConfig config, std::vector<kernels::AdamRange> ranges, DType dtype, Device device)
    : config_(config), ranges_(std::move(ranges)) {
  VC_CHECK(numel >= 0, "AdamW: negative element count " << numel);
  VC_CHECK(config.beta1 >= 0.0 && config.beta1 < 1.0, "AdamW: beta1 " << config.beta1 << " is not in [0, 1)");
  VC_CHECK(config.beta2 >= 0.0 && config.beta2 < 1.0, "AdamW: beta2 " << config.beta2 << " is not in [0, 1)");
  VC_CHECK(config.eps >= 0.0, "AdamW: eps " << config.eps << " is negative");
  VC_CHECK(config.weight_decay >= 0.0, "AdamW: weight_decay " << config.weight_decay << " is negative");
  if (ranges_.empty() && numel > 0) ranges_.push_back({0, numel, config.weight_decay});
  int64_t previous_end = 0;
  for (size_t r = 0; r < ranges_.size(); ++r) {
    const kernels::AdamRange& range = ranges_[r];
    VC_CHECK(range.begin >= previous_end && range.begin <= range.end && range.end <= numel,
             "AdamW: range " << r << " [" << range.begin << ", " << range.end
                             << ") is not sorted, non-overlapping and within the " << numel << " elements"
                             << " (previous range ended at " << previous_end << ")");
    VC_CHECK(range.weight_decay >= 0.0, "AdamW: range " << r << " has negative weight decay " << range.weight_decay);
    previous_end = range.end;
  }
  m_ = Tensor::zeros({numel}, dtype, device);
  v_ = Tensor::zeros({numel}, dtype, device);
}

void AdamW::step(Tensor& params, const Tensor& grads, double lr, double grad_scale, double clip_coef) {
  check_flat(params, "AdamW::step", "parameter");
  check_flat(grads, "AdamW::step", "gradient");
  VC_CHECK(params.numel() == numel() && grads.numel() == numel(),
           "AdamW::step: optimizer holds moments for " << numel() << " elements but got parameters "
                                                       << params.describe() << " and gradients " << grads.describe());
  VC_CHECK(params.device() == m_.device() && grads.device() == m_.device(),
           "AdamW::step: moments are on " << device_name(m_.device()) << " but got parameters " << params.describe()
                                          << " and gradients " << grads.describe());
  VC_CHECK(params.dtype() == m_.dtype() && grads.dtype() == m_.dtype(),
           "AdamW::step: moments are " << dtype_name(m_.dtype()) << " but got parameters " << params.describe()
                                       << " and gradients " << grads.describe());
  VC_CHECK(std::isfinite(lr) && lr >= 0.0, "AdamW::step: learning rate " << lr << " is not finite and >= 0");

  kernels::AdamStepScalars s;
  s.lr = lr;
  s.beta1 = config_.beta1;
  s.beta2 = config_.beta2;
  s.eps = config_.eps;
  s.step = step_ + 1;
  s.grad_scale = grad_scale;
  s.clip_coef = clip_coef;
  if (m_.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    kernels::adamw_update_cuda(params.data<float>(), grads.data<float>(), m_.data<float>(), v_.data<float>(), numel(),
                               ranges_, s);
#endif
  } else if (m_.dtype() == DType::F32)
    kernels::adamw_update_cpu(params.data<float>(), grads.data<float>(), m_.data<float>(), v_.data<float>(), numel(),
                              ranges_, s);
  else
    kernels::adamw_update_cpu(params.data<double>(), grads.data<double>(), m_.data<double>(), v_.data<double>(),
                              numel(), ranges_, s);
  step_ = s.step;
}

void AdamW::load_state(const Tensor& exp_avg, const Tensor& exp_avg_sq, int64_t step_count) {
  VC_CHECK(exp_avg.defined() && exp_avg.numel() == numel(),
           "AdamW::load_state: exp_avg " << (exp_avg.defined() ? exp_avg.describe() : std::string("undefined"))
                                         << " does not have the optimizer's " << numel() << " elements");
  VC_CHECK(exp_avg_sq.defined() && exp_avg_sq.numel() == numel(),
           "AdamW::load_state: exp_avg_sq "
               << (exp_avg_sq.defined() ? exp_avg_sq.describe() : std::string("undefined"))
               << " does not have the optimizer's " << numel() << " elements");
  VC_CHECK(step_count >= 0, "AdamW::load_state: negative step count " << step_count);
  VC_CHECK(exp_avg.dtype() == m_.dtype() || (exp_avg.device() == Device::CPU && m_.device() == Device::CPU),
           "AdamW::load_state: moments " << exp_avg.describe() << " do not match the optimizer's "
                                         << m_.describe() << " (dtype conversion happens on the CPU)");
  m_.copy_from(exp_avg);
  v_.copy_from(exp_avg_sq);
  step_ = step_count;
}

std::string AdamW::describe() const {
  std::ostringstream os;
  os << "AdamW(betas=(" << config_.beta1 << ", " << config_.beta2 << "), eps=" << config_.eps << ", ranges="
     << ranges_.size() << " [";
  // Elements per weight decay, in order of first appearance.
  std::vector<std::pair<double, int64_t>> per_decay;
  for (const kernels::AdamRange& r : ranges_) {
    bool found = false;
    for (auto& entry : per_decay)
      if (entry.first == r.weight_decay) {
        entry.second += r.end - r.begin;
        found = true;
      }
    if (!found) per_decay.emplace_back(r.weight_decay, r.end - r.begin);
  }
  for (size_t i = 0; i < per_decay.size(); ++i) {
    if (i) os << ", ";
    if (per_decay[i].first == 0.0)
      os << "no decay: ";
    else
      os << "decay " << per_decay[i].first << ": ";
    os << per_decay[i].second;
  }
  os << "], step=" << step_ << ", " << dtype_name(m_.dtype()) << ")";
  return os.str();
}

double global_norm(const Tensor& x) {
  check_flat(x, "global_norm", "input");
  double sum = 0;
  if (x.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    sum = kernels::flat_sum_squares_cuda(x.data<float>(), x.numel());
#endif
  } else {
    sum = x.dtype() == DType::F32 ? kernels::flat_sum_squares_cpu(x.data<float>(), x.numel())
                                  : kernels::flat_sum_squares_cpu(x.data<double>(), x.numel());
  }
  return std::sqrt(sum);
}

double clip_coefficient(double total_norm, double max_norm) {
  const double coef = max_norm / (total_norm + 1e-6);
  return coef < 1.0 ? coef : (std::isnan(coef) ? coef : 1.0);
}

double clip_grad_norm(Tensor& grads, double max_norm) {
  VC_CHECK(max_norm > 0.0, "clip_grad_norm: max_norm " << max_norm << " must be > 0");
  const double total = global_norm(grads);
  scale_in_place(grads, clip_coefficient(total, max_norm));
  return total;
}

void scale_in_place(Tensor& x, double s) {
  check_flat(x, "scale_in_place", "input");
  if (x.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    kernels::flat_scale_cuda(x.data<float>(), x.numel(), s);
#endif
  } else if (x.dtype() == DType::F32)
    kernels::flat_scale_cpu(x.data<float>(), x.numel(), s);
  else
    kernels::flat_scale_cpu(x.data<double>(), x.numel(), s);
}

void zero_in_place(Tensor& x) {
  check_flat(x, "zero_in_place", "input");
  if (x.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    kernels::flat_zero_cuda(x.data<float>(), x.numel());
#endif
  } else if (x.dtype() == DType::F32)
    kernels::flat_zero_cpu(x.data<float>(), x.numel());
  else
    kernels::flat_zero_cpu(x.data<double>(), x.numel());
}

// ---------------------------------------------------------------- schedules

LrSchedule::LrSchedule(LrScheduleKind kind, double base_lr, int64_t warmup_steps, double gamma)
    : kind_(kind), base_lr_(base_lr), warmup_steps_(warmup_steps), gamma_(gamma) {
  VC_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "learning-rate schedule: base lr " << base_lr
                                                                                         << " is not finite and >= 0");
  const bool warms_up = kind == LrScheduleKind::WarmupConstant || kind == LrScheduleKind::WarmupExponential;
  VC_CHECK(!warms_up || warmup_steps > 0,
           "learning-rate schedule: warm-up needs warmup_steps > 0, got " << warmup_steps);
  const bool decays = kind == LrScheduleKind::Exponential || kind == LrScheduleKind::WarmupExponential;
  VC_CHECK(!decays || (gamma > 0.0 && gamma <= 1.0),
           "learning-rate schedule: exponential decay needs gamma in (0, 1], got " << gamma);
}

LrSchedule LrSchedule::constant(double base_lr) { return LrSchedule(LrScheduleKind::Constant, base_lr, 0, 1.0); }
LrSchedule LrSchedule::warmup_constant(double base_lr, int64_t warmup_steps) {
  return LrSchedule(LrScheduleKind::WarmupConstant, base_lr, warmup_steps, 1.0);
}
LrSchedule LrSchedule::exponential(double base_lr, double gamma) {
  return LrSchedule(LrScheduleKind::Exponential, base_lr, 0, gamma);
}
LrSchedule LrSchedule::warmup_exponential(double base_lr, int64_t warmup_steps, double gamma) {
  return LrSchedule(LrScheduleKind::WarmupExponential, base_lr, warmup_steps, gamma);
}

double LrSchedule::lr_at(int64_t step, int64_t epoch) const {
  VC_CHECK(step >= 0 && epoch >= 0, "learning-rate schedule: step " << step << " and epoch " << epoch
                                                                    << " must be >= 0");
  double lr = base_lr_;
  if ((kind_ == LrScheduleKind::WarmupConstant || kind_ == LrScheduleKind::WarmupExponential) &&
      step < warmup_steps_)
    lr = lr * (static_cast<double>(step) / static_cast<double>(warmup_steps_));
  if (kind_ == LrScheduleKind::Exponential || kind_ == LrScheduleKind::WarmupExponential)
    lr = lr * std::pow(gamma_, static_cast<double>(epoch));
  return lr;
}

std::string LrSchedule::describe() const {
  std::ostringstream os;
  switch (kind_) {
    case LrScheduleKind::Constant: os << "constant"; break;
    case LrScheduleKind::WarmupConstant: os << "linear warm-up over " << warmup_steps_ << " steps then constant"; break;
    case LrScheduleKind::Exponential: os << "exponential decay gamma=" << gamma_ << " per epoch"; break;
    case LrScheduleKind::WarmupExponential:
      os << "linear warm-up over " << warmup_steps_ << " steps then exponential decay gamma=" << gamma_
         << " per epoch";
      break;
  }
  os << ", base lr " << base_lr_;
  return os.str();
}

}  // namespace vitscuda
