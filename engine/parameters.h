// ParameterStore: every parameter lives in one flat f32 buffer (llm.c's layout), so
// zeroing, clipping, norms and the optimizer are one pass each. Modules hold views by
// name; names are the HF state-dict names (legacy weight-norm names weight_g/weight_v).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <functional>
#include <memory>

#include "engine/tensor.h"

namespace vitscuda {

namespace autograd {
struct GradSlot;
}

// How `weights_convert init` fills a parameter (transformers' _init_weights scheme).
enum class InitKind {
  Zeros,
  Ones,
  Normal,         // N(0, std)
  KaimingNormal,  // N(0, sqrt(2 / fan_in)), fan_in = shape[1] * prod(shape[2:])
  Uniform,        // U(-bound, bound)
  WeightNormG,    // ||v|| over all dims but 0 (weight_g of a weight-normed conv)
};

struct ParameterInit {
  InitKind kind = InitKind::Zeros;
  double value = 0.0;   // std for Normal, bound for Uniform
  std::string norm_of;  // WeightNormG: the name of the matching weight_v
  ParameterInit() = default;
  ParameterInit(InitKind k, double v = 0.0, std::string of = {}) : kind(k), value(v), norm_of(std::move(of)) {}
};

// Each parameter starts at a multiple of this many elements (16 bytes in f32) of the flat buffers,
// so vectorised library kernels (cuBLAS, cuDNN, cuFFT) are not locked out of their aligned paths.
// The gaps stay zero: their gradient is zero, so AdamW (weight decay included) leaves them zero.
constexpr int64_t kParameterAlignment = 4;

struct ParameterInfo {
  std::string name;
  Shape shape;
  int64_t offset = 0;  // in elements into the flat buffer
  ParameterInit init;
  std::string module;  // top-level module ("text_encoder", "flow", ...), for per-module counts
};

class ParameterStore {
 public:
  // Declares a parameter (before finalize); a duplicate name is an error.
  void declare(const std::string& name, const Shape& shape, ParameterInit init = {});
  // Allocates the flat buffer (zeros); no declarations afterwards.
  void finalize();
  bool finalized() const { return flat_.defined(); }

  bool has(const std::string& name) const;
  Tensor get(const std::string& name) const;  // a view into the flat buffer; unknown name is an error
  const ParameterInfo& info(const std::string& name) const;
  const std::vector<ParameterInfo>& params() const { return params_; }  // declaration order
  // Elements in the flat buffers (parameters, gradients, optimizer moments): the parameters plus
  // the zero gaps that align each one (kParameterAlignment).
  int64_t flat_numel() const { return total_; }
  int64_t count() const;  // elements of all parameters, without the gaps
  // Moves the parameters (and gradients, when enabled) to `device`; views handed out before
  // keep the old storage.
  void to(Device device);
  Device device() const { return flat_.device(); }
  Tensor& flat() { return flat_; }
  const Tensor& flat() const { return flat_; }

  // Gradients: one flat buffer like the parameters. Parameters for which `trainable(name)`
  // holds get a gradient slot (a view into the flat buffer) that get() attaches to the
  // returned view, so ops record their backward; the others are constants.
  void enable_grad(const std::function<bool(const std::string&)>& trainable);
  bool grad_enabled() const { return grads_.defined(); }
  bool trainable(const std::string& name) const;
  Tensor& grads() { return grads_; }
  const Tensor& grads() const { return grads_; }
  Tensor grad(const std::string& name) const;  // view into the flat gradient buffer
  void zero_grad();
  // Number of trainable elements and the trainable ranges [begin, end) of the flat buffers.
  int64_t trainable_count() const;

  // Fills every parameter by its ParameterInit, drawing from `seed`.
  void initialize(uint64_t seed);
  // Parameter counts per top-level module, declaration order.
  std::vector<std::pair<std::string, int64_t>> counts_by_module() const;

 private:
  std::vector<ParameterInfo> params_;
  std::map<std::string, size_t> index_;
  int64_t total_ = 0;
  Tensor flat_;
  Tensor grads_;
  std::vector<std::shared_ptr<autograd::GradSlot>> slots_;  // per parameter; nullptr when frozen
};

}  // namespace vitscuda
