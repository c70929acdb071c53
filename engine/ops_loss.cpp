// Training losses (kernels/loss.h): scalar ops, forward + tape-recorded backward. A new loss follows the
// same recipe: its kernels in kernels/loss.h (CPU in kernels/cpu/loss.cpp, CUDA in kernels/cuda/loss.cu,
// one argument list), its op here, declared in engine/ops.h.
#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/loss.h"

namespace vitscuda::ops {

Tensor masked_l1_loss(const Tensor& generated, const Tensor& target, const Tensor& mask) {
  const char* op = "masked_l1_loss";
  check_operands(op, {{"generated", &generated}, {"target", &target}, {"mask", &mask, true, false}});
  VC_CHECK(generated.ndim() == 3, op << ": generated must be [B, C, frames], got " << generated.describe());
  VC_CHECK(target.shape() == generated.shape(),
           op << ": target " << target.describe() << " must match generated " << generated.describe());
  const int B = as_int(op, "batch", generated.dim(0)), C = as_int(op, "channels", generated.dim(1));
  const int64_t frames = generated.dim(2);
  const bool mask_shape_ok = (mask.ndim() == 3 && mask.dim(0) == B && mask.dim(1) == 1 && mask.dim(2) == frames) ||
                             (mask.ndim() == 2 && mask.dim(0) == B && mask.dim(1) == frames);
  VC_CHECK(mask_shape_ok, op << ": mask " << mask.describe() << " must be [" << B << ", 1, " << frames << "] or ["
                             << B << ", " << frames << "] for generated " << generated.describe());
  const DType dtype = generated.dtype();
  const Tensor frame_mask = mask.dtype() == dtype ? mask.detach() : mask.to(dtype);

  Tensor loss = Tensor::empty({}, dtype, generated.device());
  VC_KERNEL(op, generated, masked_l1_forward, generated.data<T>(), target.data<T>(), frame_mask.data<T>(), B, C, frames,
            loss.data<T>());
  if (autograd::needs_grad({&generated, &target})) {
    SlotPtr sg = slot_of(generated), st = slot_of(target);
    const Tensor gs = generated.detach(), ts = target.detach();
    autograd::record(op, loss, [sg, st, gs, ts, frame_mask, B, C, frames](const Tensor& dy) {
      Tensor dg = grad_buffer(sg, gs.shape()), dt = grad_buffer(st, ts.shape());
      VC_KERNEL("masked_l1_loss_backward", dy, masked_l1_backward, gs.data<T>(), ts.data<T>(), frame_mask.data<T>(),
                dy.data<T>(), data_or_null<T>(dg), data_or_null<T>(dt), B, C, frames);
    });
  }
  return loss;
}

}  // namespace vitscuda::ops
