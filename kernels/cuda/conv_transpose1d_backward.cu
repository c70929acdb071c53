// conv_transpose1d backward on cuDNN. The forward (conv_transpose1d.cu) is the input gradient
// of the convolution C whose filter is w [Cin, Cout, K] read as [out = Cin, in = Cout, 1, K]
// (stride, padding): y = C^T x. Hence
//   dx += C(dy)                      cudnnConvolutionForward, input dy [B, Cout, 1, Tout], output [B, Cin, 1, Tin]
//   dw += filter gradient of C       cudnnConvolutionBackwardFilter with C's input = dy and its
//                                    output gradient = x
// both with beta = 1 (accumulate). C maps Tout back to exactly Tin: (Tout + 2p - K)/stride + 1 = Tin
// with no remainder, since Tout = (Tin - 1)*stride - 2p + K. Algorithms are found once per shape
// by the Find*Ex functions on the real inputs and a scratch output (the search writes its
// output; dx and dw accumulate) and cached. db is a deterministic reduction. fp32 FMA math only.
#include <climits>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/conv_transpose1d.h"
#include "kernels/cuda/bias_grad.cuh"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

int64_t checked_output_length(int B, int Cin, int Tin, int Cout, int K, int stride, int padding) {
  const char* who = "conv_transpose1d backward";
  VC_CHECK(B >= 0 && Cin > 0 && Tin >= 1 && Cout > 0 && K > 0,
           who << ": invalid sizes B=" << B << " Cin=" << Cin << " Tin=" << Tin << " Cout=" << Cout << " K=" << K);
  VC_CHECK(stride >= 1 && padding >= 0, who << ": invalid stride " << stride << " or padding " << padding);
  const int64_t Tout = conv_transpose1d_output_length(Tin, K, stride, padding);
  VC_CHECK(Tout >= 1, who << ": output length " << Tout << " for Tin " << Tin << ", K " << K << ", stride " << stride
                          << ", padding " << padding);
  return Tout;
}

struct TransposeBackwardPlan {
  // In C's terms: in_desc is its input (the transposed conv's output, y-space), out_desc its
  // output (x-space).
  cudnnTensorDescriptor_t in_desc = nullptr, out_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  bool have_data_algo = false, have_filter_algo = false;  // each searched when first wanted
  cudnnConvolutionFwdAlgo_t data_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdFilterAlgo_t filter_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  size_t data_workspace = 0, filter_workspace = 0;
};

using TransposeKey = std::tuple<int, int, int, int, int, int, int>;
std::mutex g_mutex;
std::map<TransposeKey, TransposeBackwardPlan> g_plans;
constexpr size_t kMaxFindWorkspace = size_t(256) << 20;

// As conv1d_backward.cu: the fastest deterministic algorithm that ran and fits, else the
// fastest that ran; never a tensor-op result.
template <typename Perf, typename Algo>
bool choose_algorithm(const Perf* perf, int found, size_t limit, Algo* algo, size_t* workspace) {
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < found; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
      if (perf[i].mathType == CUDNN_TENSOR_OP_MATH || perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        continue;
      if (pass == 0 && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
      *algo = perf[i].algo;
      *workspace = perf[i].memory;
      return true;
    }
  return false;
}

cuda::Scratch search_workspace(size_t* limit) {
  *limit = kMaxFindWorkspace;
  try {
    return cuda::Scratch(*limit, "cuDNN algorithm search workspace");
  } catch (const Error&) {
    *limit = 0;  // tight memory: consider only algorithms without a workspace
    return cuda::Scratch();
  }
}

TransposeBackwardPlan& plan_for(int B, int Cin, int Tin, int Cout, int K, int stride, int padding, int64_t Tout) {
  const TransposeKey key{B, Cin, Tin, Cout, K, stride, padding};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;
  VC_CHECK(Tout <= INT_MAX, "conv_transpose1d backward: output length " << Tout << " exceeds cuDNN's int dimensions");
  TransposeBackwardPlan p;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.in_desc));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.out_desc));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w_desc));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv_desc));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.in_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cout, 1,
                                         static_cast<int>(Tout)));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.out_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cin, 1, Tin));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, Cin, Cout, 1, K));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv_desc, 0, padding, 1, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv_desc, CUDNN_FMA_MATH));  // no TF32
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv_desc, p.in_desc, p.w_desc, &on, &oc, &oh, &ow));
  VC_CHECK(on == B && oc == Cin && oh == 1 && ow == Tin,
           "conv_transpose1d backward: cuDNN maps the output gradient to [" << on << ", " << oc << ", " << oh << ", "
                                                                            << ow << "], not the input's [" << B
                                                                            << ", " << Cin << ", 1, " << Tin << "]");
  return g_plans.emplace(key, p).first->second;
}

}  // namespace

void conv_transpose1d_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                    int B, int Cin, int Tin, int Cout, int K, int stride, int padding) {
  const int64_t Tout = checked_output_length(B, Cin, Tin, Cout, K, stride, padding);
  if (B == 0 || (!dx && !dw && !db)) return;
  VC_CHECK(dy, "conv_transpose1d backward: the output gradient dy is null");
  if (db) cuda::bias_grad_channels(dy, db, B, Cout, Tout);
  if (!dx && !dw) return;
  VC_CHECK(!dx || w, "conv_transpose1d backward: dx is wanted but the weight is null");
  VC_CHECK(!dw || x, "conv_transpose1d backward: dw is wanted but the input x is null");
  std::lock_guard<std::mutex> lock(g_mutex);
  TransposeBackwardPlan& p = plan_for(B, Cin, Tin, Cout, K, stride, padding, Tout);
  const float one = 1.0f;
  if (dx) {
    if (!p.have_data_algo) {
      cuda::Scratch out(sizeof(float) * size_t(B) * Cin * Tin, "cuDNN convolution search output");
      size_t limit = 0;
      cuda::Scratch workspace = search_workspace(&limit);
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int found = 0;
      CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(cuda::cudnn_handle(), p.in_desc, dy, p.w_desc, w,
                                                         p.conv_desc, p.out_desc, out.get(),
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf,
                                                         workspace.get(), limit));
      VC_CHECK(choose_algorithm(perf, found, limit, &p.data_algo, &p.data_workspace),
               "conv_transpose1d backward: cuDNN found no usable convolution algorithm for dx (x ["
                   << B << ", " << Cin << ", " << Tin << "], weight [" << Cin << ", " << Cout << ", " << K
                   << "], stride " << stride << ")");
      p.have_data_algo = true;
    }
    cuda::Scratch workspace(p.data_workspace, "cuDNN convolution workspace");
    CUDNN_CHECK(cudnnConvolutionForward(cuda::cudnn_handle(), &one, p.in_desc, dy, p.w_desc, w, p.conv_desc,
                                        p.data_algo, workspace.get(), p.data_workspace, &one, p.out_desc, dx));
  }
  if (dw) {
    if (!p.have_filter_algo) {
      cuda::Scratch out(sizeof(float) * size_t(Cin) * Cout * K, "cuDNN backward-filter search output");
      size_t limit = 0;
      cuda::Scratch workspace = search_workspace(&limit);
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int found = 0;
      CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
          cuda::cudnn_handle(), p.in_desc, dy, p.out_desc, x, p.conv_desc, p.w_desc, out.get(),
          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf, workspace.get(), limit));
      VC_CHECK(choose_algorithm(perf, found, limit, &p.filter_algo, &p.filter_workspace),
               "conv_transpose1d backward: cuDNN found no usable backward-filter algorithm for dw (x ["
                   << B << ", " << Cin << ", " << Tin << "], weight [" << Cin << ", " << Cout << ", " << K
                   << "], stride " << stride << ")");
      p.have_filter_algo = true;
    }
    cuda::Scratch workspace(p.filter_workspace, "cuDNN backward-filter workspace");
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(cuda::cudnn_handle(), &one, p.in_desc, dy, p.out_desc, x, p.conv_desc,
                                               p.filter_algo, workspace.get(), p.filter_workspace, &one, p.w_desc,
                                               dw));
  }
}

}  // namespace vitscuda::kernels
