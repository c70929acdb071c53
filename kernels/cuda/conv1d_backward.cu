// conv1d backward on the GPU, on the same two paths as the forward (conv1d.cu):
//  - cuDNN (symmetric padding, unless conv1d_set_cuda_path(Im2colGemm)): dx by
//    cudnnConvolutionBackwardData and dw by cudnnConvolutionBackwardFilter, both with beta = 1
//    so they accumulate (conv_common.cuh: the algorithm chosen per shape class by cuDNN's heuristic,
//    with no search that would write dx / dw).
//  - im2col + cuBLAS (asymmetric padding, or forced): per batch item and tile of output
//    columns, dw_g += dy_g cols_g^T (cols = im2col(x)), and dcols_g = w_g^T dy_g followed by a
//    col2im gather: one thread per input element sums the window entries that read it, so no
//    atomics are needed and the result is deterministic.
// db is a deterministic reduction (bias_grad.cuh). fp32 FMA math only (no TF32).
#include <algorithm>
#include <climits>

#include "kernels/conv1d.h"
#include "kernels/cuda/bias_grad.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"

namespace vitscuda::kernels {

namespace {

// ---------------------------------------------------------------- im2col + GEMM

// The adjoint of cuda::im2col for input positions [p0, p0 + plen) of every channel:
// dx[c, p] += sum over k of dcols[(c*K + k)*tile + j] where (t0 + j)*stride + k*dilation - pad_left == p
// and j in [0, tile). One thread per (c, p): a gather, so no two threads write the same element.
__global__ void col2im_add_kernel(const float* __restrict__ dcols, float* __restrict__ dx, int Tin, int K, int stride,
                                  int pad_left, int dilation, int64_t t0, int64_t tile, int64_t p0, int64_t plen,
                                  int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i / plen;
    const int64_t p = p0 + i % plen;
    float* dst = dx + c * Tin + p;
    float acc = *dst;
    const float* dc = dcols + c * K * tile;
    for (int k = 0; k < K; ++k) {
      const int64_t q = p + pad_left - int64_t(k) * dilation;  // = (t0 + j) * stride; decreases with k
      if (q < t0 * stride) break;                               // j < 0 from here on
      if (q % stride != 0) continue;
      const int64_t j = q / stride - t0;
      if (j < tile) acc += dc[int64_t(k) * tile + j];
    }
    *dst = acc;
  }
}

void conv1d_backward_im2col(const float* x, const float* w, const float* dy, float* dx, float* dw, int B, int Cin,
                            int Tin, int Cout, int K, int stride, int pad_left, int dilation, int groups, int64_t Tout) {
  const int cin_g = Cin / groups, cout_g = Cout / groups;
  const int64_t rows = int64_t(cin_g) * K;  // per group
  VC_CHECK(rows <= INT_MAX, "conv1d backward: " << cin_g << " input channels per group times kernel size " << K
                                                << " exceeds cuBLAS's int dimensions");
  const int64_t per_column = rows * groups * int64_t(sizeof(float));
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(Tout, int64_t(cuda::kIm2colScratchBytes) / per_column));
  cuda::Scratch cols(size_t(per_column * tile), "conv1d backward im2col columns");
  const float one = 1.0f, zero = 0.0f;
  const int ld_dy = static_cast<int>(Tout);
  for (int n = 0; n < B; ++n) {
    const float* xn = x ? x + int64_t(n) * Cin * Tin : nullptr;
    const float* dyn = dy + int64_t(n) * Cout * Tout;
    float* dxn = dx ? dx + int64_t(n) * Cin * Tin : nullptr;
    for (int64_t t0 = 0; t0 < Tout; t0 += tile) {
      const int64_t len = std::min(tile, Tout - t0);
      const int ilen = static_cast<int>(len);
      if (dw) {
        cuda::im2col(xn, cols.as<float>(), Cin, Tin, K, stride, pad_left, dilation, t0, len);
        // Per group, row-major dW_g [cout_g, rows] += dY_g [cout_g, len] (row stride Tout) cols_g^T;
        // column-major: dW_g^T [rows, cout_g] += cols_g^T-as-stored^T (op T on [len, rows]) dY_g^T.
        CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N,
                                               static_cast<int>(rows), cout_g, ilen, &one, cols.as<float>(), ilen,
                                               rows * len, dyn + t0, ld_dy, int64_t(cout_g) * Tout, &one, dw,
                                               static_cast<int>(rows), int64_t(cout_g) * rows, groups));
      }
      if (dx) {
        // Per group, row-major dcols_g [rows, len] = W_g^T [rows, cout_g] dY_g [cout_g, len];
        // column-major: dcols_g^T [len, rows] = dY_g^T (stored, op N) W_g (stored [rows, cout_g], op T).
        CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_T, ilen,
                                               static_cast<int>(rows), cout_g, &one, dyn + t0, ld_dy,
                                               int64_t(cout_g) * Tout, w, static_cast<int>(rows),
                                               int64_t(cout_g) * rows, &zero, cols.as<float>(), ilen, rows * len,
                                               groups));
        // Input positions this tile's windows touch, clamped to the signal.
        const int64_t p0 = std::max<int64_t>(0, t0 * stride - pad_left);
        const int64_t p1 = std::min<int64_t>(Tin, (t0 + len - 1) * stride + int64_t(K - 1) * dilation - pad_left + 1);
        if (p1 > p0) {
          const int64_t plen = p1 - p0, work = int64_t(Cin) * plen;
          VC_LAUNCH(col2im_add_kernel, cuda::blocks_for(work, 256), 256, 0)(cols.as<float>(), dxn, Tin, K, stride,
                                                                             pad_left, dilation, t0, len, p0, plen,
                                                                             work);
          VC_CHECK_LAUNCH("conv1d backward col2im");
        }
      }
    }
  }
}

// ---------------------------------------------------------------- cuDNN

// dx and dw accumulate (beta = 1).
void conv1d_backward_cudnn(const float* x, const float* w, const float* dy, float* dx, float* dw, int B, int Cin,
                           int Tin, int Cout, int K, int stride, int pad, int dilation, int groups, int64_t Tout) {
  const cuda::CudnnConvShape c{"conv1d backward", B, Cin, Tin, Cout, K, stride, pad, dilation, groups, Tout};
  if (dx) cuda::cudnn_conv_backward_data(c, w, dy, 1.0f, dx);
  if (dw) cuda::cudnn_conv_backward_filter(c, x, dy, 1.0f, dw);
}

}  // namespace

void conv1d_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int B,
                          int Cin, int Tin, int Cout, int K, int stride, int pad_left, int pad_right, int dilation,
                          int groups) {
  const int64_t Tout = conv1d_checked_output_length("conv1d backward", B, Cin, Tin, Cout, K, stride, pad_left, pad_right,
                                                    dilation, groups);
  if (B == 0 || (!dx && !dw && !db)) return;
  VC_CHECK(dy, "conv1d backward: the output gradient dy is null");
  if (db) cuda::bias_grad_channels(dy, db, B, Cout, Tout);
  // An empty input (all padding) has no dx, and its windows read only zeros: dw gets nothing.
  if ((!dx && !dw) || Tin == 0) return;
  VC_CHECK(!dx || w, "conv1d backward: dx is wanted but the weight is null");
  VC_CHECK(!dw || x, "conv1d backward: dw is wanted but the input x is null");
  const bool cudnn_can = pad_left == pad_right;
  const Conv1dCudaPath path = conv1d_cuda_path();
  VC_CHECK(path != Conv1dCudaPath::Cudnn || cudnn_can,
           "conv1d backward: the cuDNN path was requested but cuDNN has no asymmetric padding ("
               << pad_left << ", " << pad_right << ")");
  if (path != Conv1dCudaPath::Im2colGemm && cudnn_can)
    conv1d_backward_cudnn(x, w, dy, dx, dw, B, Cin, Tin, Cout, K, stride, pad_left, dilation, groups, Tout);
  else
    conv1d_backward_im2col(x, w, dy, dx, dw, B, Cin, Tin, Cout, K, stride, pad_left, dilation, groups, Tout);
}

}  // namespace vitscuda::kernels
