// conv_transpose1d backward on cuDNN. The forward (conv_transpose1d.cu) is the input gradient
// of the convolution C whose filter is w [Cin, Cout, K] read as [out = Cin, in = Cout, 1, K]
// (stride, padding): y = C^T x. Hence
//   dx += C(dy)                      cudnnConvolutionForward, input dy [B, Cout, 1, Tout], output [B, Cin, 1, Tin]
//   dw += filter gradient of C       cudnnConvolutionBackwardFilter with C's input = dy and its
//                                    output gradient = x
// both with beta = 1 (accumulate). C maps Tout back to exactly Tin: (Tout + 2p - K)/stride + 1 = Tin
// with no remainder, since Tout = (Tin - 1)*stride - 2p + K. Algorithms: conv_common.cuh (chosen
// per shape class). db is a deterministic reduction. fp32 FMA math only.
#include <cstdint>

#include "kernels/conv_transpose1d.h"
#include "kernels/cuda/bias_grad.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"

namespace vitscuda::kernels {

void conv_transpose1d_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                    int B, int Cin, int Tin, int Cout, int K, int stride, int padding) {
  const int64_t Tout = conv_transpose1d_checked_output_length("conv_transpose1d backward", B, Cin, Tin, Cout, K,
                                                              stride, padding);
  if (B == 0 || (!dx && !dw && !db)) return;
  VC_CHECK(dy, "conv_transpose1d backward: the output gradient dy is null");
  if (db) cuda::bias_grad_channels(dy, db, B, Cout, Tout);
  if (!dx && !dw) return;
  VC_CHECK(!dx || w, "conv_transpose1d backward: dx is wanted but the weight is null");
  VC_CHECK(!dw || x, "conv_transpose1d backward: dw is wanted but the input x is null");
  VC_CHECK(Tout <= INT32_MAX, "conv_transpose1d backward: output length " << Tout << " exceeds cuDNN's int dimensions");
  // C's input is the transposed convolution's output (dy-space), its output the input (x-space).
  const cuda::CudnnConvShape c{"conv_transpose1d backward", B, Cout, static_cast<int>(Tout), Cin, K, stride, padding,
                               1, 1, Tin};
  if (dx) cuda::cudnn_conv_forward(c, dy, w, 1.0f, dx);
  if (dw) cuda::cudnn_conv_backward_filter(c, dy, x, 1.0f, dw);
}

}  // namespace vitscuda::kernels
