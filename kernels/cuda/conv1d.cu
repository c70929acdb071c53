// conv1d on the GPU: cuDNN (a 1-D convolution is a 2-D one of height 1) with the algorithm
// found once per shape by cudnnFindConvolutionForwardAlgorithmEx and cached, or our
// im2col + cuBLAS path where cuDNN cannot serve (asymmetric padding) or is set aside.
// Both use fp32 FMA math only (no TF32), to stay within float rounding of the CPU.
#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/conv1d.h"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

Conv1dCudaPath g_path = Conv1dCudaPath::Auto;

// ---------------------------------------------------------------- im2col + GEMM

// cols [groups, Cin_g * K, tile] for output columns [t0, t0 + tile) of batch item b.
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ cols, int Cin, int Tin, int K,
                              int stride, int pad_left, int dilation, int64_t t0, int64_t tile, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i % tile;
    const int64_t row = i / tile;  // (channel, k) over all groups: channel = row / K
    const int k = static_cast<int>(row % K);
    const int64_t c = row / K;
    const int64_t pos = (t0 + t) * stride + int64_t(k) * dilation - pad_left;
    cols[i] = (pos >= 0 && pos < Tin) ? x[c * Tin + pos] : 0.0f;
  }
}

__global__ void add_bias_channels_kernel(float* __restrict__ y, const float* __restrict__ bias, int C, int64_t T,
                                         int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[(i / T) % C];
}

void add_bias_channels(float* y, const float* bias, int B, int C, int64_t T) {
  const int64_t total = int64_t(B) * C * T;
  if (!bias || total == 0) return;
  VC_LAUNCH(add_bias_channels_kernel, cuda::blocks_for(total, 256), 256, 0)(y, bias, C, T, total);
  VC_CHECK_LAUNCH("conv bias");
}

constexpr size_t kIm2colScratchBytes = size_t(64) << 20;  // bounds the column buffer; time is tiled to fit

void conv1d_im2col_gemm(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout,
                        int K, int stride, int pad_left, int dilation, int groups, int64_t Tout) {
  const int cin_g = Cin / groups, cout_g = Cout / groups;
  const int64_t rows = int64_t(cin_g) * K;  // per group
  const int64_t per_column = rows * groups * int64_t(sizeof(float));
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(Tout, int64_t(kIm2colScratchBytes) / per_column));
  cuda::Scratch cols(size_t(per_column * tile), "conv1d im2col columns");
  const float one = 1.0f, zero = 0.0f;
  for (int n = 0; n < B; ++n) {
    const float* xn = x + int64_t(n) * Cin * Tin;
    float* yn = y + int64_t(n) * Cout * Tout;
    for (int64_t t0 = 0; t0 < Tout; t0 += tile) {
      const int64_t len = std::min(tile, Tout - t0);
      const int64_t total = rows * groups * len;
      VC_LAUNCH(im2col_kernel, cuda::blocks_for(total, 256), 256, 0)(xn, cols.as<float>(), Cin, Tin, K, stride,
                                                                      pad_left, dilation, t0, len, total);
      VC_CHECK_LAUNCH("conv1d im2col");
      // Per group, row-major Y_g [cout_g, len] (row stride Tout) = W_g [cout_g, rows] @ cols_g [rows, len];
      // column-major: Y_g^T = cols_g^T W_g^T.
      CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(len),
                                             cout_g, static_cast<int>(rows), &one, cols.as<float>(),
                                             static_cast<int>(len), rows * len, w, static_cast<int>(rows),
                                             int64_t(cout_g) * rows, &zero, yn + t0, static_cast<int>(Tout),
                                             int64_t(cout_g) * Tout, groups));
    }
  }
  add_bias_channels(y, b, B, Cout, Tout);
}

// ---------------------------------------------------------------- cuDNN

struct CudnnConvPlan {
  cudnnTensorDescriptor_t x_desc = nullptr, y_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  size_t workspace_bytes = 0;
};

using ConvKey = std::tuple<int, int, int, int, int, int, int, int, int>;
std::mutex g_plans_mutex;
std::map<ConvKey, CudnnConvPlan> g_plans;  // descriptors live for the process, one per shape

constexpr size_t kMaxFindWorkspace = size_t(256) << 20;

CudnnConvPlan& cudnn_plan(const float* x, const float* w, float* y, int B, int Cin, int Tin, int Cout, int K,
                          int stride, int pad, int dilation, int groups, int64_t Tout) {
  const ConvKey key{B, Cin, Tin, Cout, K, stride, pad, dilation, groups};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;
  CudnnConvPlan p;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x_desc));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y_desc));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w_desc));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv_desc));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cin, 1, Tin));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, Cout, Cin / groups, 1, K));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv_desc, 0, pad, 1, stride, 1, dilation, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionGroupCount(p.conv_desc, groups));
  CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv_desc, CUDNN_FMA_MATH));  // no TF32
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv_desc, p.x_desc, p.w_desc, &on, &oc, &oh, &ow));
  VC_CHECK(on == B && oc == Cout && oh == 1 && ow == Tout,
           "conv1d: cuDNN output shape [" << on << ", " << oc << ", " << oh << ", " << ow << "] differs from the expected ["
                                          << B << ", " << Cout << ", 1, " << Tout << "]");
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cout, 1, ow));
  // Time the candidates on the real buffers once; the output is overwritten by the real call after.
  cuda::Scratch workspace;
  size_t limit = kMaxFindWorkspace;
  try {
    workspace = cuda::Scratch(limit, "cuDNN algorithm search workspace");
  } catch (const Error&) {
    limit = 0;  // tight memory: consider only algorithms without a workspace
  }
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int found = 0;
  CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(cuda::cudnn_handle(), p.x_desc, x, p.w_desc, w, p.conv_desc,
                                                     p.y_desc, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf,
                                                     workspace.get(), limit));
  bool chosen = false;
  for (int i = 0; i < found && !chosen; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
    // Tensor-op (TF32) results would break fp32 parity with the CPU.
    if (perf[i].mathType == CUDNN_TENSOR_OP_MATH || perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    p.algo = perf[i].algo;
    p.workspace_bytes = perf[i].memory;
    chosen = true;
  }
  VC_CHECK(chosen, "conv1d: cuDNN found no usable forward algorithm for x [" << B << ", " << Cin << ", " << Tin
                                                                            << "], weight [" << Cout << ", "
                                                                            << Cin / groups << ", " << K << "]");
  return g_plans.emplace(key, p).first->second;
}

void conv1d_cudnn(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout, int K,
                  int stride, int pad, int dilation, int groups, int64_t Tout) {
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  CudnnConvPlan& p = cudnn_plan(x, w, y, B, Cin, Tin, Cout, K, stride, pad, dilation, groups, Tout);
  cuda::Scratch workspace(p.workspace_bytes, "cuDNN convolution workspace");
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionForward(cuda::cudnn_handle(), &one, p.x_desc, x, p.w_desc, w, p.conv_desc, p.algo,
                                      workspace.get(), p.workspace_bytes, &zero, p.y_desc, y));
  add_bias_channels(y, b, B, Cout, Tout);
}

}  // namespace

void conv1d_set_cuda_path(Conv1dCudaPath path) { g_path = path; }
Conv1dCudaPath conv1d_cuda_path() { return g_path; }

void conv1d_forward_cuda(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout,
                         int K, int stride, int pad_left, int pad_right, int dilation, int groups) {
  const int64_t Tout = conv1d_output_length(Tin, K, stride, pad_left, pad_right, dilation);
  VC_CHECK(Tout >= 1, "conv1d: input length " << Tin << " is shorter than the kernel span");
  if (B <= 0 || Cout <= 0) return;
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
