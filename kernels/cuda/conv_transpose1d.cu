// conv_transpose1d on cuDNN: a transposed convolution is the input gradient of the
// convolution whose filter is w [Cin, Cout, K] read as [out = Cin, in = Cout, 1, K], so
// cudnnConvolutionBackwardData computes it directly. The algorithm is found once per shape
// (on the real buffers) and cached; fp32 FMA math only (no TF32).
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/conv_transpose1d.h"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

struct TransposePlan {
  cudnnTensorDescriptor_t x_desc = nullptr, y_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  cudnnConvolutionBwdDataAlgo_t algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  size_t workspace_bytes = 0;
};

using TransposeKey = std::tuple<int, int, int, int, int, int, int>;
std::mutex g_mutex;
std::map<TransposeKey, TransposePlan> g_plans;
constexpr size_t kMaxFindWorkspace = size_t(256) << 20;

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int C, int64_t T,
                                int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[(i / T) % C];
}

TransposePlan& plan_for(const float* x, const float* w, float* y, int B, int Cin, int Tin, int Cout, int K, int stride,
                        int padding, int64_t Tout) {
  const TransposeKey key{B, Cin, Tin, Cout, K, stride, padding};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;
  TransposePlan p;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x_desc));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y_desc));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w_desc));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv_desc));
  // In the convolution's terms x is the output gradient ("dy") and y the input gradient ("dx").
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cin, 1, Tin));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cout, 1,
                                         static_cast<int>(Tout)));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, Cin, Cout, 1, K));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv_desc, 0, padding, 1, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv_desc, CUDNN_FMA_MATH));
  cuda::Scratch workspace;
  size_t limit = kMaxFindWorkspace;
  try {
    workspace = cuda::Scratch(limit, "cuDNN algorithm search workspace");
  } catch (const Error&) {
    limit = 0;
  }
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int found = 0;
  CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(cuda::cudnn_handle(), p.w_desc, w, p.x_desc, x, p.conv_desc,
                                                          p.y_desc, y, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found,
                                                          perf, workspace.get(), limit));
  bool chosen = false;
  for (int i = 0; i < found && !chosen; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
    // Tensor-op (TF32) results would break fp32 parity with the CPU.
    if (perf[i].mathType == CUDNN_TENSOR_OP_MATH || perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    p.algo = perf[i].algo;
    p.workspace_bytes = perf[i].memory;
    chosen = true;
  }
  VC_CHECK(chosen, "conv_transpose1d: cuDNN found no usable algorithm for x [" << B << ", " << Cin << ", " << Tin
                                                                              << "], weight [" << Cin << ", " << Cout
                                                                              << ", " << K << "], stride " << stride);
  return g_plans.emplace(key, p).first->second;
}

}  // namespace

void conv_transpose1d_forward_cuda(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin,
                                   int Cout, int K, int stride, int padding) {
  const int64_t Tout = conv_transpose1d_output_length(Tin, K, stride, padding);
  VC_CHECK(Tout >= 1, "conv_transpose1d: output length " << Tout);
  if (B <= 0 || Cout <= 0) return;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    TransposePlan& p = plan_for(x, w, y, B, Cin, Tin, Cout, K, stride, padding, Tout);
    cuda::Scratch workspace(p.workspace_bytes, "cuDNN transposed-convolution workspace");
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnConvolutionBackwardData(cuda::cudnn_handle(), &one, p.w_desc, w, p.x_desc, x, p.conv_desc, p.algo,
                                             workspace.get(), p.workspace_bytes, &zero, p.y_desc, y));
  }
  if (b) {
    const int64_t total = int64_t(B) * Cout * Tout;
    VC_LAUNCH(add_bias_kernel, cuda::blocks_for(total, 256), 256, 0)(y, b, Cout, Tout, total);
    VC_CHECK_LAUNCH("conv_transpose1d bias");
  }
}

}  // namespace vitscuda::kernels
