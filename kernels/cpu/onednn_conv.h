// 1-D convolutions through oneDNN (Debian libdnnl-dev), the library PyTorch runs its CPU convolutions on.
// Its JIT kernels block channels by the vector width (nCw16c with AVX-512) and keep the output tile in
// registers over all taps and input channels; at the HiFi-GAN decoder's shapes on 2 cores that is
// 1.25-1.4x the throughput of our tap and im2col gemms (bench figures in bench/README.md). Internal to
// kernels/cpu: conv1d.cpp decides when it runs.
//
// Layouts and semantics are conv1d's (kernels/conv1d.h): x [B, Cin, Tin], w [Cout, Cin/groups, K],
// y [B, Cout, Tout]; the backward ACCUMULATES into dx and dw (db is the caller's: one reduction over dy shared
// with the other paths). float32 only. Activations are reordered
// into oneDNN's blocked layout and back; the backward's results are added into the caller's buffers by
// a reorder with a sum post-op. Results are deterministic for a given thread count and CPU (oneDNN splits
// the work statically; its weight-gradient reduction is in a fixed order).
#pragma once
#include <cstdint>

namespace vitscuda::kernels::detail {

struct Conv1dGeometry {
  int B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups;
  int64_t Tout;
};

// Each returns false, having written nothing, when oneDNN has no convolution for the geometry (the caller then
// runs its own kernels); any other failure of oneDNN's is an Error naming the geometry.
bool onednn_conv1d_forward(const Conv1dGeometry& g, const float* x, const float* w, const float* b, float* y);
bool onednn_conv1d_backward(const Conv1dGeometry& g, const float* x, const float* w, const float* dy, float* dx,
                            float* dw);
// Calls of the two above that oneDNN ran.
int64_t onednn_conv1d_runs();

}  // namespace vitscuda::kernels::detail
