#include "engine/autograd.h"

#include <cstring>

#include "kernels/error.h"

namespace vitscuda::autograd {

namespace {
thread_local Tape* g_current_tape = nullptr;
}

Tensor GradSlot::accumulator(const Shape& view_shape) {
  if (!grad.defined()) grad = Tensor::zeros(shape, dtype);
  return grad.reshape(view_shape);
}

void Tape::push(const char* op, std::shared_ptr<GradSlot> output, BackwardFn fn) {
  nodes_.push_back({op, std::move(output), std::move(fn)});
}

void Tape::backward(const Tensor& loss) {
  VC_CHECK(loss.numel() == 1, "backward: the loss must have one element, got " << loss.describe());
  VC_CHECK(loss.requires_grad(), "backward: the loss does not depend on any parameter that requires a gradient");
  Tensor seed = loss.grad_slot()->accumulator();
  seed.fill(1.0);
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node node = std::move(nodes_[i]);
    nodes_.pop_back();
    if (!node.output->grad.defined()) continue;  // nothing downstream of this node reached the loss
    node.fn(node.output->grad.reshape(node.output->shape));
    // An intermediate's gradient is complete once its producer has run: release it.
    if (!node.output->is_parameter) node.output->grad = Tensor();
  }
  nodes_.clear();
}

Tape* current_tape() { return g_current_tape; }

RecordingScope::RecordingScope(Tape& tape) : previous_(g_current_tape) { g_current_tape = &tape; }
RecordingScope::~RecordingScope() { g_current_tape = previous_; }

NoGradScope::NoGradScope() : previous_(g_current_tape) { g_current_tape = nullptr; }
NoGradScope::~NoGradScope() { g_current_tape = previous_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_current_tape) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_current_tape) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* op, Tensor& output, BackwardFn fn) {
  VC_CHECK(g_current_tape, "record(" << op << ") without a recording tape");
  VC_CHECK(output.device() == Device::CPU,
           op << ": gradients through CUDA tensors are not implemented yet; train with --device cpu");
  auto slot = std::make_shared<GradSlot>();
  slot->shape = output.shape();
  slot->dtype = output.dtype();
  output.set_grad_slot(slot);
  g_current_tape->push(op, std::move(slot), std::move(fn));
}

}  // namespace vitscuda::autograd
