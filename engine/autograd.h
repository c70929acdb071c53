// Autograd-lite: a tape of backward closures. Ops record a node when a tape is
// recording and any input requires a gradient; backward(loss) runs the nodes in
// reverse, accumulating into GradSlots, and frees each node (and the tensors it
// saved) as soon as it has run. No graph machinery beyond this.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::autograd {

// Where one tensor's gradient accumulates. Allocated (zeros) on first use, or preset to a
// view into the parameter store's flat gradient buffer for parameters.
struct GradSlot {
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Tensor grad;
  bool is_parameter = false;
  // The gradient buffer, zero-initialised on first call, viewed with `view_shape` (same numel).
  Tensor accumulator(const Shape& view_shape);
  Tensor accumulator() { return accumulator(shape); }
};

using BackwardFn = std::function<void(const Tensor& grad_output)>;

class Tape {
 public:
  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  void push(const char* op, std::shared_ptr<GradSlot> output, BackwardFn fn);
  // Seeds d(loss)/d(loss) = 1 (loss must have one element) and runs every node in reverse.
  // Nodes are released as they run; the tape is empty afterwards.
  void backward(const Tensor& loss);
  // The same from an output whose gradient is `grad` (same numel) instead of a scalar loss.
  void backward_from(const Tensor& output, const Tensor& grad);
  size_t size() const { return nodes_.size(); }
  void clear() { nodes_.clear(); }

 private:
  struct Node {
    const char* op;
    std::shared_ptr<GradSlot> output;
    BackwardFn fn;
  };
  std::vector<Node> nodes_;
};

// Records on `tape` for its lifetime (nests; restores the previous tape).
class RecordingScope {
 public:
  explicit RecordingScope(Tape& tape);
  ~RecordingScope();
  RecordingScope(const RecordingScope&) = delete;
  RecordingScope& operator=(const RecordingScope&) = delete;

 private:
  Tape* previous_;
};

// Nothing is recorded for its lifetime (inference, the frozen duration predictor).
class NoGradScope {
 public:
  NoGradScope();
  ~NoGradScope();
  NoGradScope(const NoGradScope&) = delete;
  NoGradScope& operator=(const NoGradScope&) = delete;

 private:
  Tape* previous_;
};

// True when a tape is recording and any input requires a gradient.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Gives `output` a fresh GradSlot and records `fn` for it on the current tape.
void record(const char* op, Tensor& output, BackwardFn fn);

// Activation recomputation ("gradient checkpointing"): y = fn(x) is computed without recording,
// so none of fn's intermediates stay alive; one node is recorded instead, whose backward runs
// fn(x) again on a tape of its own and backpropagates through it. Parameters that fn reads get
// their gradients as usual. fn must be deterministic (no random draws). Memory: the segment's
// activations exist only during its own backward; cost: one more forward of the segment.
Tensor recompute(const char* name, const std::function<Tensor(const Tensor&)>& fn, const Tensor& x);

}  // namespace vitscuda::autograd
