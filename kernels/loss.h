// Training losses as raw-pointer kernels, one argument list for the CPU and the CUDA backend. Each
// forward writes its scalar to `loss` (one element, in the backend's memory); each backward reads the
// loss's upstream gradient from `grad_loss` (one element, the backend's memory: no host round trip on the
// device) and ACCUMULATES (+=) into its gradient buffers, any of which may be nullptr.
//
// masked L1 (the VITS mel loss): loss = sum_{b,c,t} |x - y| * mask[b, t] / (C * sum mask) for x, y
// [B, C, frames] and frame weights mask [B, frames] (1 valid, 0 padding).
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// The masked mean L1, summed in double; throws when sum mask <= 0.
template <typename T>
void masked_l1_forward_cpu(const T* x, const T* y, const T* mask, int B, int C, int64_t frames, T* loss);

// grad_x += g * sign(x - y) * mask / (C * sum mask); grad_y -= the same, g = *grad_loss. sign(0) = 0, as
// torch's.
template <typename T>
void masked_l1_backward_cpu(const T* x, const T* y, const T* mask, const T* grad_loss, T* grad_x, T* grad_y, int B,
                            int C, int64_t frames);

// ---------------------------------------------------------------- CUDA (float32, device pointers)
// Same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).

// Summed in double on the device in a fixed order (deterministic); waits for the stream to check the mask
// sum on the host (throws when it is <= 0).
void masked_l1_forward_cuda(const float* x, const float* y, const float* mask, int B, int C, int64_t frames,
                            float* loss);

// sum mask is recomputed on the device; the forward has checked it is > 0 (here a zero sum gives inf/NaN
// gradients).
void masked_l1_backward_cuda(const float* x, const float* y, const float* mask, const float* grad_loss,
                             float* grad_x, float* grad_y, int B, int C, int64_t frames);

}  // namespace vitscuda::kernels
