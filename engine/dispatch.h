// How ops pick a kernel: by the tensor's device, then its dtype. The CPU kernels are
// templates over float and double; the CUDA kernels (float only) have the same name with
// `_cuda` for `_cpu` and the same arguments, so one argument list serves both:
//
//   VC_KERNEL("conv1d", x, conv1d_forward, x.data<T>(), w.data<T>(), ...);
//
// runs kernels::conv1d_forward_cpu<T> (T = float or double) for a CPU tensor and
// kernels::conv1d_forward_cuda for a CUDA one. In a build without CUDA the CUDA branch is
// never instantiated (it is a generic lambda), and a CUDA tensor cannot exist there anyway.
#pragma once
#include "common/error.h"
#include "engine/kernel_profile.h"
#include "engine/tensor.h"

namespace vitscuda::detail {

template <typename Cpu, typename Cuda>
void run_on_device(const char* op, const Tensor& t, Cpu&& cpu, Cuda&& cuda) {
  if (t.device() == Device::CUDA) {
#if VITSCUDA_HAVE_CUDA
    VC_CHECK(t.dtype() == DType::F32, op << ": CUDA kernels are float32 only, got " << t.describe());
    cuda(float{});
#else
    (void)cuda;
    VC_FAIL(op << ": " << t.describe() << " needs CUDA, but this vitscuda was built without it");
#endif
  } else if (t.dtype() == DType::F32) {
    cpu(float{});
  } else {
    cpu(double{});
  }
}

}  // namespace vitscuda::detail

#define VC_KERNEL(op, tensor, kernel, ...)                        \
  ::vitscuda::detail::run_on_device(                              \
      op, tensor,                                                 \
      [&](auto vc_tag_) {                                         \
        using T = decltype(vc_tag_);                              \
        ::vitscuda::kernel_profile::Scope vc_timed_(#kernel);     \
        ::vitscuda::kernels::kernel##_cpu<T>(__VA_ARGS__);        \
      },                                                          \
      [&](auto vc_tag_) {                                         \
        using T = decltype(vc_tag_);                              \
        ::vitscuda::kernels::kernel##_cuda(__VA_ARGS__);          \
      })
