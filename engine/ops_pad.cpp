// Padding ops (kernels/pad.h): reflect padding of the last dimension, forward + tape-recorded backward.
#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/pad.h"

namespace vitscuda::ops {

Tensor reflect_pad(const Tensor& x, int64_t left, int64_t right) {
  const char* op = "reflect_pad";
  check_operands(op, {{"x", &x}});
  VC_CHECK(x.ndim() >= 1, op << ": x must have at least one dimension, got " << x.describe());
  const int64_t n = x.dim(-1);
  // torch's reflect mode: each pad must be smaller than the padded dimension (a sample is mirrored
  // around the edge, never the edge itself).
  VC_CHECK(left >= 0 && right >= 0 && left < n && right < n,
           op << ": padding (" << left << ", " << right << ") must be >= 0 and < the last dimension " << n << " of "
              << x.describe());
  const int64_t rows = x.numel() / n;
  Shape y_shape = x.shape();
  y_shape.back() = left + n + right;
  Tensor y = Tensor::empty(y_shape, x.dtype(), x.device());
  VC_KERNEL(op, x, reflect_pad_forward, x.data<T>(), y.data<T>(), rows, n, left, right);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    const Shape in_shape = x.shape();
    autograd::record(op, y, [slot, in_shape, rows, n, left, right](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, in_shape);
      VC_KERNEL("reflect_pad_backward", dy, reflect_pad_backward, dy.data<T>(), dx.data<T>(), rows, n, left, right);
    });
  }
  return y;
}

}  // namespace vitscuda::ops
