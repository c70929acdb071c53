#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/alignment.h"
#include "kernels/error.h"

namespace vitscuda::ops {

Tensor gather_frames(const Tensor& x, const std::vector<int32_t>& index, int64_t frames) {
  VC_CHECK(x.ndim() == 3, "gather_frames: x must be [B, C, T], got " << x.describe());
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2);
  VC_CHECK(static_cast<int64_t>(index.size()) == B * frames,
           "gather_frames: " << index.size() << " indices for batch " << B << " x " << frames << " frames");
  for (size_t i = 0; i < index.size(); ++i)
    VC_CHECK(index[i] >= -1 && index[i] < T,
             "gather_frames: index " << index[i] << " at " << i << " outside [-1, " << T << ")");
  Tensor y = Tensor::empty({B, C, frames}, x.dtype());
  if (x.dtype() == DType::F32)
    kernels::gather_frames_cpu(x.data<float>(), index.data(), y.data<float>(), B, C, T, frames);
  else
    kernels::gather_frames_cpu(x.data<double>(), index.data(), y.data<double>(), B, C, T, frames);
  if (autograd::needs_grad({&x})) {
    auto slot = x.grad_slot();
    autograd::record("gather_frames", y, [slot, index, B, C, T, frames](const Tensor& dy) {
      Tensor dx = slot->accumulator({B, C, T});
      if (dy.dtype() == DType::F32)
        kernels::gather_frames_backward_cpu(dy.data<float>(), index.data(), dx.data<float>(), B, C, T, frames);
      else
        kernels::gather_frames_backward_cpu(dy.data<double>(), index.data(), dx.data<double>(), B, C, T, frames);
    });
  }
  return y;
}

}  // namespace vitscuda::ops
