// conv_transpose1d on cuDNN: a transposed convolution is the input gradient of the convolution
// C whose filter is w [Cin, Cout, K] read as [out = Cin, in = Cout, 1, K], so cuDNN's
// backward-data direction of C computes it directly (conv_common.cuh: the algorithm chosen per shape
// class; fp32 FMA math only). C maps the transposed convolution's output length
// Tout = (Tin - 1) * stride - 2 * padding + K back to exactly Tin.
#include "kernels/conv_transpose1d.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"

namespace vitscuda::kernels {

void conv_transpose1d_forward_cuda(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin,
                                   int Cout, int K, int stride, int padding) {
  const int64_t Tout =
      conv_transpose1d_checked_output_length("conv_transpose1d", B, Cin, Tin, Cout, K, stride, padding);
  if (B == 0) return;
  VC_CHECK(Tout <= INT32_MAX, "conv_transpose1d: output length " << Tout << " exceeds cuDNN's int dimensions");
  // In C's terms, y is the input (gradient) and x the output gradient.
  const cuda::CudnnConvShape c{"conv_transpose1d", B, Cout, static_cast<int>(Tout), Cin, K, stride, padding, 1, 1, Tin};
  cuda::cudnn_conv_backward_data(c, w, x, 0.0f, y);
  cuda::add_channel_bias(y, b, B, Cout, Tout);
}

}  // namespace vitscuda::kernels
