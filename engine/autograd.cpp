#include "engine/autograd.h"

#include <cstring>

#include "common/error.h"
#include "engine/dispatch.h"
#include "kernels/elementwise.h"

namespace vitscuda::autograd {

namespace {
thread_local Tape* g_current_tape = nullptr;
}

Tensor GradSlot::accumulator(const Shape& view_shape) {
  if (!grad.defined()) grad = Tensor::zeros(shape, dtype, device);
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

void Tape::backward_from(const Tensor& output, const Tensor& grad) {
  VC_CHECK(output.requires_grad(), "backward_from: the output does not depend on anything that requires a gradient");
  VC_CHECK(grad.numel() == output.numel(),
           "backward_from: gradient " << grad.describe() << " for output " << output.describe());
  output.grad_slot()->accumulator().copy_from(grad.reshape(output.shape()));
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node node = std::move(nodes_[i]);
    nodes_.pop_back();
    if (!node.output->grad.defined()) continue;
    node.fn(node.output->grad.reshape(node.output->shape));
    if (!node.output->is_parameter) node.output->grad = Tensor();
  }
  nodes_.clear();
}

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
  auto slot = std::make_shared<GradSlot>();
  slot->shape = output.shape();
  slot->dtype = output.dtype();
  slot->device = output.device();
  output.set_grad_slot(slot);
  g_current_tape->push(op, std::move(slot), std::move(fn));
}

Tensor recompute(const char* name, const std::function<Tensor(const Tensor&)>& fn, const Tensor& x) {
  if (!g_current_tape) return fn(x);
  Tensor y;
  {
    NoGradScope no_grad;
    y = fn(x.detach());
  }
  const std::shared_ptr<GradSlot> x_slot = x.grad_slot();
  const Tensor saved = x.detach();
  record(name, y, [fn, saved, x_slot](const Tensor& dy) {
    Tape inner;
    Tensor input = saved;
    std::shared_ptr<GradSlot> input_slot;
    if (x_slot) {
      input_slot = std::make_shared<GradSlot>();
      input_slot->shape = saved.shape();
      input_slot->dtype = saved.dtype();
      input_slot->device = saved.device();
      input_slot->is_parameter = true;  // kept after the inner backward, to be passed on below
      input.set_grad_slot(input_slot);
    }
    Tensor again;
    {
      RecordingScope recording(inner);
      again = fn(input);
    }
    if (!again.requires_grad()) return;  // nothing in the segment needs a gradient
    inner.backward_from(again, dy);
    if (x_slot && input_slot->grad.defined()) {
      // x's gradient from inside the segment joins what it gets elsewhere.
      Tensor dx = x_slot->accumulator(saved.shape());
      const Tensor inner_dx = input_slot->grad;
      VC_KERNEL("recompute", dx, accumulate, inner_dx.data<T>(), dx.data<T>(), dx.numel());
    }
  });
  return y;
}

}  // namespace vitscuda::autograd
