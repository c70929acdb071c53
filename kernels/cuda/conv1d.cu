// conv1d on the GPU: cuDNN (conv_common.cuh: the algorithm chosen per shape class and cached), or
// our im2col + cuBLAS path where cuDNN cannot serve (asymmetric padding) or is set aside.
// Both use fp32 FMA math only (no TF32), to stay within float rounding of the CPU.
#include <algorithm>

#include "kernels/conv1d.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"
#include "kernels/device.h"

namespace vitscuda::kernels {

namespace {

Conv1dCudaPath g_path = Conv1dCudaPath::Auto;

// ---------------------------------------------------------------- im2col + GEMM

void conv1d_im2col_gemm(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout,
                        int K, int stride, int pad_left, int dilation, int groups, int64_t Tout) {
  const int cin_g = Cin / groups, cout_g = Cout / groups;
  const int64_t rows = int64_t(cin_g) * K;  // per group
  const int64_t per_column = rows * groups * int64_t(sizeof(float));
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(Tout, int64_t(cuda::kIm2colScratchBytes) / per_column));
  cuda::Scratch cols(size_t(per_column * tile), "conv1d im2col columns");
  const float one = 1.0f, zero = 0.0f;
  for (int n = 0; n < B; ++n) {
    const float* xn = x + int64_t(n) * Cin * Tin;
    float* yn = y + int64_t(n) * Cout * Tout;
    for (int64_t t0 = 0; t0 < Tout; t0 += tile) {
      const int64_t len = std::min(tile, Tout - t0);
      cuda::im2col(xn, cols.as<float>(), Cin, Tin, K, stride, pad_left, dilation, t0, len);
      // Per group, row-major Y_g [cout_g, len] (row stride Tout) = W_g [cout_g, rows] @ cols_g [rows, len];
      // column-major: Y_g^T = cols_g^T W_g^T.
      CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(len),
                                             cout_g, static_cast<int>(rows), &one, cols.as<float>(),
                                             static_cast<int>(len), rows * len, w, static_cast<int>(rows),
                                             int64_t(cout_g) * rows, &zero, yn + t0, static_cast<int>(Tout),
                                             int64_t(cout_g) * Tout, groups));
    }
  }
  cuda::add_channel_bias(y, b, B, Cout, Tout);
}

// ---------------------------------------------------------------- cuDNN

void conv1d_cudnn(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout, int K,
                  int stride, int pad, int dilation, int groups, int64_t Tout) {
  cuda::cudnn_conv_forward({"conv1d", B, Cin, Tin, Cout, K, stride, pad, dilation, groups, Tout}, x, w, 0.0f, y);
  cuda::add_channel_bias(y, b, B, Cout, Tout);
}

}  // namespace

void conv1d_set_cuda_path(Conv1dCudaPath path) { g_path = path; }
Conv1dCudaPath conv1d_cuda_path() { return g_path; }

void conv1d_forward_cuda(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout,
                         int K, int stride, int pad_left, int pad_right, int dilation, int groups) {
  const int64_t Tout =
      conv1d_checked_output_length("conv1d", B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups);
  if (B == 0) return;
  if (Tin == 0) {
    // Every window reads only padding: the output is the bias (cuDNN rejects a zero-width input).
    device_memset_zero(y, sizeof(float) * size_t(B) * Cout * size_t(Tout));
    cuda::add_channel_bias(y, b, B, Cout, Tout);
    return;
  }
  const bool cudnn_can = pad_left == pad_right;
  VC_CHECK(g_path != Conv1dCudaPath::Cudnn || cudnn_can,
           "conv1d: the cuDNN path was requested but cuDNN has no asymmetric padding (" << pad_left << ", "
                                                                                         << pad_right << ")");
  if (g_path != Conv1dCudaPath::Im2colGemm && cudnn_can)
    conv1d_cudnn(x, w, b, y, B, Cin, Tin, Cout, K, stride, pad_left, dilation, groups, Tout);
  else
    conv1d_im2col_gemm(x, w, b, y, B, Cin, Tin, Cout, K, stride, pad_left, dilation, groups, Tout);
}

}  // namespace vitscuda::kernels
