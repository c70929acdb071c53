// What every op in engine/ops_*.cpp is built from, besides VC_KERNEL (engine/dispatch.h): the operand
// checks, the kernels' int range, the optional pointers of absent operands and gradients, and the
// bookkeeping of a recorded backward. Internal to the engine's op sources; model code calls engine/ops.h.
//
// The recipe of an op:
//   1. check_operands (defined, one device, one dtype), then its shapes, with the op's name in every message;
//   2. allocate the output on the input's device, run the forward with VC_KERNEL;
//   3. if autograd::needs_grad(inputs): take the inputs' slots (slot_of), keep what the backward reads
//      (saved_if / detach), and record a closure that gets each gradient buffer (grad_buffer) and runs the
//      backward kernel with VC_KERNEL on the upstream gradient's device (data_or_null for absent ones).
#pragma once
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <memory>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/tensor.h"

namespace vitscuda::ops {

using SlotPtr = std::shared_ptr<autograd::GradSlot>;

// One operand of an op, for check_operands.
struct Operand {
  const char* name;
  const Tensor* tensor;
  bool required = true;     // false: may be undefined (an absent bias or embedding)
  bool match_dtype = true;  // false: any dtype (a mask the op converts); the device must still match
};

// Required operands must be defined; all defined ones must be on one device, and those with match_dtype
// share one dtype. Errors name the op, the operands and their descriptions.
inline void check_operands(const char* op, std::initializer_list<Operand> operands) {
  const Operand* first = nullptr;        // the first defined operand: the device to match
  const Operand* first_typed = nullptr;  // the first defined operand with match_dtype: the dtype to match
  for (const Operand& o : operands) {
    if (!o.tensor->defined()) {
      VC_CHECK(!o.required, op << ": " << o.name << " is an undefined tensor");
      continue;
    }
    if (!first) first = &o;
    VC_CHECK(o.tensor->device() == first->tensor->device(),
             op << ": operands on different devices: " << o.name << " is " << o.tensor->describe() << " but "
                << first->name << " is " << first->tensor->describe() << " (no implicit copies)");
    if (!o.match_dtype) continue;
    if (!first_typed) first_typed = &o;
    VC_CHECK(o.tensor->dtype() == first_typed->tensor->dtype(),
             op << ": dtypes differ: " << o.name << " is " << o.tensor->describe() << " but " << first_typed->name
                << " is " << first_typed->tensor->describe() << " (dtypes must match)");
  }
}

// A size or index passed to kernels that take int.
inline int as_int(const char* op, const char* what, int64_t value) {
  VC_CHECK(value >= 0 && value <= INT_MAX, op << ": " << what << " = " << value << " exceeds the kernels' int range");
  return static_cast<int>(value);
}

// Dimension `dim` of x, counted from the end when negative.
inline int normalize_dim(const char* op, const Tensor& x, int dim) {
  const int d = dim < 0 ? dim + x.ndim() : dim;
  VC_CHECK(d >= 0 && d < x.ndim(), op << ": dim " << dim << " out of range for " << x.describe());
  return d;
}

// x viewed as [outer, mid, inner] around dimension d.
inline void split_at(const Tensor& x, int d, int64_t& outer, int64_t& mid, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int i = 0; i < d; ++i) outer *= x.dim(i);
  mid = x.dim(d);
  for (int i = d + 1; i < x.ndim(); ++i) inner *= x.dim(i);
}

// The data of an optional operand or gradient buffer, nullptr when it is undefined (the kernels' "absent").
template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// The gradient slot of an operand, nullptr when it is undefined or needs no gradient.
inline SlotPtr slot_of(const Tensor& t) { return t.defined() ? t.grad_slot() : nullptr; }

// The gradient buffer of a slot viewed as `shape`, or an undefined tensor without a slot.
inline Tensor grad_buffer(const SlotPtr& slot, const Shape& shape) {
  return slot ? slot->accumulator(shape) : Tensor();
}

// A tensor kept for the backward only when some gradient needs it (undefined otherwise).
inline Tensor saved_if(bool needed, const Tensor& t) { return needed && t.defined() ? t.detach() : Tensor(); }

}  // namespace vitscuda::ops
