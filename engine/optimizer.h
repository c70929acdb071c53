// AdamW over the flat parameter buffer, gradient-norm clipping and learning-rate schedules.
//
// AdamW reproduces torch.optim.AdamW (single-tensor path, amsgrad=False, maximize=False);
// parameter groups are ranges of the flat buffer, each with its weight decay, and elements
// outside every range (frozen parameters) are never touched. clip_grad_norm follows
// torch.nn.utils.clip_grad_norm_ (norm_type 2) with the norm accumulated in double.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "kernels/adam.h"

namespace vitscuda {

// torch.optim.AdamW's defaults.
struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

// Two groups: [0, boundary) with `weight_decay`, [boundary, numel) with none.
std::vector<kernels::AdamRange> adam_ranges_with_boundary(int64_t numel, int64_t boundary, double weight_decay);

// One range per run of trainable parameters of `store` (declaration order = buffer order)
// that agree on `decays(name)`: those get `weight_decay`, the others 0. Frozen parameters
// are in no range.
std::vector<kernels::AdamRange> adam_ranges_for(const ParameterStore& store,
                                                const std::function<bool(const std::string&)>& decays,
                                                double weight_decay);

class AdamW {
 public:
  // Moments for `numel`-element flat buffers of `dtype` on `device` (on CUDA the update is one launch). Empty `ranges` means one group
  // covering everything with config.weight_decay (torch's single param group).
  AdamW(int64_t numel, AdamWConfig config = {}, std::vector<kernels::AdamRange> ranges = {},
        DType dtype = DType::F32, Device device = Device::CPU);

  // One update at learning rate `lr`: increments the step count, then updates `params`,
  // m and v in one pass. The gradient used is (grads * grad_scale) * clip_coef, each
  // product rounded to the buffer's type (grad_scale: the inverse loss scale; clip_coef:
  // from clip_coefficient(), to clip without a separate pass over the gradients).
  void step(Tensor& params, const Tensor& grads, double lr, double grad_scale = 1.0, double clip_coef = 1.0);

  const AdamWConfig& config() const { return config_; }
  const std::vector<kernels::AdamRange>& ranges() const { return ranges_; }
  int64_t numel() const { return m_.numel(); }

  // State for checkpoints: first and second moments (flat, like the parameters) and the
  // number of updates done (torch's state["step"]).
  const Tensor& exp_avg() const { return m_; }
  const Tensor& exp_avg_sq() const { return v_; }
  int64_t step_count() const { return step_; }
  // Restores the state saved from exp_avg(), exp_avg_sq() and step_count(); the moments
  // must have this optimizer's element count (they are copied, converting the dtype).
  void load_state(const Tensor& exp_avg, const Tensor& exp_avg_sq, int64_t step_count);

  // "AdamW(betas=(0.9, 0.999), eps=1e-08, ranges=2 [decay 0.01: 1200, none: 34], step=0)".
  std::string describe() const;

 private:
  AdamWConfig config_;
  std::vector<kernels::AdamRange> ranges_;
  Tensor m_;
  Tensor v_;
  int64_t step_ = 0;
};

// Global L2 norm of a flat buffer, accumulated in double.
double global_norm(const Tensor& x);
// torch's clip factor: min(max_norm / (total_norm + 1e-6), 1).
double clip_coefficient(double total_norm, double max_norm);
// torch.nn.utils.clip_grad_norm_: multiplies `grads` by clip_coefficient(norm, max_norm)
// (always, as torch does, so a non-finite norm propagates) and returns the norm before clipping.
double clip_grad_norm(Tensor& grads, double max_norm);
// x *= s and x = 0 over a whole flat buffer.
void scale_in_place(Tensor& x, double s);
void zero_in_place(Tensor& x);

enum class LrScheduleKind {
  Constant,            // base
  WarmupConstant,      // base * warmup(step)
  Exponential,         // base * gamma^epoch          (ExponentialLR stepped once per epoch, as VITS)
  WarmupExponential,   // base * warmup(step) * gamma^epoch
};

// Learning rate as a function of the optimizer step about to run (0 for the first update)
// and the number of completed epochs. warmup(step) = step / warmup_steps while step <
// warmup_steps, else 1 (transformers' get_constant_schedule_with_warmup, so the first update
// has learning rate 0). gamma^epoch is ExponentialLR's closed form, base * gamma ** epoch.
class LrSchedule {
 public:
  static LrSchedule constant(double base_lr);
  static LrSchedule warmup_constant(double base_lr, int64_t warmup_steps);
  static LrSchedule exponential(double base_lr, double gamma = 0.999875);
  static LrSchedule warmup_exponential(double base_lr, int64_t warmup_steps, double gamma = 0.999875);

  double lr_at(int64_t step, int64_t epoch) const;

  LrScheduleKind kind() const { return kind_; }
  double base_lr() const { return base_lr_; }
  int64_t warmup_steps() const { return warmup_steps_; }
  double gamma() const { return gamma_; }
  // "warmup 1000 steps then exponential decay gamma=0.999875 per epoch, base lr 0.0002".
  std::string describe() const;

 private:
  LrSchedule(LrScheduleKind kind, double base_lr, int64_t warmup_steps, double gamma);
  LrScheduleKind kind_;
  double base_lr_;
  int64_t warmup_steps_;
  double gamma_;
};

}  // namespace vitscuda
