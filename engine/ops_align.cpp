#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/alignment.h"

namespace vitscuda::ops {

Tensor gather_frames(const Tensor& x, const std::vector<int32_t>& index, int64_t frames) {
  check_operands("gather_frames", {{"x", &x}});
  VC_CHECK(x.ndim() == 3, "gather_frames: x must be [B, C, T], got " << x.describe());
  const int64_t B = x.dim(0), C = x.dim(1), Tin = x.dim(2);
  VC_CHECK(static_cast<int64_t>(index.size()) == B * frames,
           "gather_frames: " << index.size() << " indices for batch " << B << " x " << frames << " frames");
  for (size_t i = 0; i < index.size(); ++i)
    VC_CHECK(index[i] >= -1 && index[i] < Tin,
             "gather_frames: index " << index[i] << " at " << i << " outside [-1, " << Tin << ")");
  Tensor y = Tensor::empty({B, C, frames}, x.dtype(), x.device());
  VC_KERNEL("gather_frames", x, gather_frames, x.data<T>(), index.data(), y.data<T>(), B, C, Tin, frames);
  if (autograd::needs_grad({&x})) {
    SlotPtr slot = slot_of(x);
    autograd::record("gather_frames", y, [slot, index, B, C, Tin, frames](const Tensor& dy) {
      Tensor dx = grad_buffer(slot, {B, C, Tin});
      VC_KERNEL("gather_frames_backward", dy, gather_frames_backward, dy.data<T>(), index.data(), dx.data<T>(), B, C,
                Tin, frames);
    });
  }
  return y;
}

}  // namespace vitscuda::ops
