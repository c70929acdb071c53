// What the convolution family shares; see conv_common.cuh.
#include <climits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"

namespace vitscuda::kernels::cuda {

namespace {

// An algorithm chosen for one direction of one shape.
struct Choice {
  bool found = false;
  int algo = 0;  // the direction's cudnnConvolution*Algo_t
  size_t workspace = 0;
};

struct Plan {
  cudnnTensorDescriptor_t in_desc = nullptr, out_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  Choice forward, backward_data, backward_filter;
};

using ShapeKey = std::tuple<int, int, int, int, int, int, int, int, int>;
std::mutex g_mutex;              // the plans, and each call (one compute stream, one cuDNN handle)
std::map<ShapeKey, Plan> g_plans;  // descriptors live for the process, one set per shape

constexpr size_t kMaxFindWorkspace = size_t(256) << 20;

std::string describe(const CudnnConvShape& s) {
  std::ostringstream os;
  os << "input [" << s.batch << ", " << s.in_channels << ", " << s.in_length << "], filter [" << s.out_channels << ", "
     << s.in_channels / s.groups << ", " << s.kernel << "], stride " << s.stride << ", padding " << s.padding
     << ", dilation " << s.dilation << ", groups " << s.groups;
  return os.str();
}

Plan& plan_for(const CudnnConvShape& s) {
  const ShapeKey key{s.batch,  s.in_channels, s.in_length, s.out_channels, s.kernel,
                     s.stride, s.padding,     s.dilation,  s.groups};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;
  VC_CHECK(s.out_length >= 1 && s.out_length <= INT_MAX,
           s.op << ": output length " << s.out_length << " is outside cuDNN's int dimensions (" << describe(s) << ")");
  Plan p;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.in_desc));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.out_desc));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w_desc));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv_desc));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.in_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.batch, s.in_channels, 1,
                                         s.in_length));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.out_channels,
                                         s.in_channels / s.groups, 1, s.kernel));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv_desc, 0, s.padding, 1, s.stride, 1, s.dilation,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionGroupCount(p.conv_desc, s.groups));
  CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv_desc, CUDNN_FMA_MATH));  // no TF32
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv_desc, p.in_desc, p.w_desc, &on, &oc, &oh, &ow));
  VC_CHECK(on == s.batch && oc == s.out_channels && oh == 1 && ow == s.out_length,
           s.op << ": cuDNN's output shape [" << on << ", " << oc << ", " << oh << ", " << ow
                << "] differs from the expected [" << s.batch << ", " << s.out_channels << ", 1, " << s.out_length
                << "] (" << describe(s) << ")");
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.out_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.batch, s.out_channels, 1,
                                         ow));
  return g_plans.emplace(key, p).first->second;
}

// The search workspace: kMaxFindWorkspace, or none when memory is tight (then only algorithms
// without a workspace are considered).
Scratch search_workspace(size_t* limit) {
  *limit = kMaxFindWorkspace;
  try {
    return Scratch(*limit, "cuDNN algorithm search workspace");
  } catch (const Error&) {
    *limit = 0;
    return Scratch();
  }
}

// From Find's results (sorted fastest first): the fastest deterministic algorithm that ran and
// fits, else the fastest that ran; never a tensor-op result.
template <typename Perf>
Choice choose(const Perf* perf, int found, size_t limit) {
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < found; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
      if (perf[i].mathType == CUDNN_TENSOR_OP_MATH || perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        continue;
      if (pass == 0 && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
      return Choice{true, static_cast<int>(perf[i].algo), perf[i].memory};
    }
  return Choice{};
}

// Where Find may write: the real output when the call overwrites it anyway, else scratch.
float* search_output(float beta, float* out, size_t elements, Scratch& scratch, const char* what) {
  if (beta == 0.0f) return out;
  scratch = Scratch(sizeof(float) * elements, what);
  return scratch.as<float>();
}

void require(const Choice& c, const CudnnConvShape& s, const char* direction) {
  VC_CHECK(c.found, s.op << ": cuDNN found no usable " << direction << " algorithm for " << describe(s));
}

}  // namespace

void cudnn_conv_forward(const CudnnConvShape& s, const float* x, const float* w, float beta, float* y) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& p = plan_for(s);
  if (!p.forward.found) {
    Scratch scratch;
    float* out = search_output(beta, y, size_t(s.batch) * s.out_channels * size_t(s.out_length), scratch,
                               "cuDNN forward search output");
    size_t limit = 0;
    Scratch workspace = search_workspace(&limit);
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(cudnn_handle(), p.in_desc, x, p.w_desc, w, p.conv_desc,
                                                       p.out_desc, out, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf,
                                                       workspace.get(), limit));
    p.forward = choose(perf, found, limit);
    require(p.forward, s, "forward");
  }
  Scratch workspace(p.forward.workspace, "cuDNN convolution workspace");
  const float one = 1.0f;
  CUDNN_CHECK(cudnnConvolutionForward(cudnn_handle(), &one, p.in_desc, x, p.w_desc, w, p.conv_desc,
                                      static_cast<cudnnConvolutionFwdAlgo_t>(p.forward.algo), workspace.get(),
                                      p.forward.workspace, &beta, p.out_desc, y));
}

void cudnn_conv_backward_data(const CudnnConvShape& s, const float* w, const float* dy, float beta, float* dx) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& p = plan_for(s);
  if (!p.backward_data.found) {
    Scratch scratch;
    float* out = search_output(beta, dx, size_t(s.batch) * s.in_channels * size_t(s.in_length), scratch,
                               "cuDNN backward-data search output");
    size_t limit = 0;
    Scratch workspace = search_workspace(&limit);
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int found = 0;
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(cudnn_handle(), p.w_desc, w, p.out_desc, dy, p.conv_desc,
                                                            p.in_desc, out, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                            &found, perf, workspace.get(), limit));
    p.backward_data = choose(perf, found, limit);
    require(p.backward_data, s, "backward-data");
  }
  Scratch workspace(p.backward_data.workspace, "cuDNN backward-data workspace");
  const float one = 1.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_handle(), &one, p.w_desc, w, p.out_desc, dy, p.conv_desc,
                                           static_cast<cudnnConvolutionBwdDataAlgo_t>(p.backward_data.algo),
                                           workspace.get(), p.backward_data.workspace, &beta, p.in_desc, dx));
}

void cudnn_conv_backward_filter(const CudnnConvShape& s, const float* x, const float* dy, float beta, float* dw) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Plan& p = plan_for(s);
  if (!p.backward_filter.found) {
    Scratch scratch;
    float* out = search_output(beta, dw, size_t(s.out_channels) * (s.in_channels / s.groups) * s.kernel, scratch,
                               "cuDNN backward-filter search output");
    size_t limit = 0;
    Scratch workspace = search_workspace(&limit);
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int found = 0;
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(cudnn_handle(), p.in_desc, x, p.out_desc, dy,
                                                              p.conv_desc, p.w_desc, out,
                                                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf,
                                                              workspace.get(), limit));
    p.backward_filter = choose(perf, found, limit);
    require(p.backward_filter, s, "backward-filter");
  }
  Scratch workspace(p.backward_filter.workspace, "cuDNN backward-filter workspace");
  const float one = 1.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn_handle(), &one, p.in_desc, x, p.out_desc, dy, p.conv_desc,
                                             static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.backward_filter.algo),
                                             workspace.get(), p.backward_filter.workspace, &beta, p.w_desc, dw));
}

namespace {

__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ cols, int in_length, int kernel,
                              int stride, int pad_left, int dilation, int64_t t0, int64_t tile, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i % tile;
    const int64_t row = i / tile;  // (channel, k): channel = row / kernel
    const int k = static_cast<int>(row % kernel);
    const int64_t c = row / kernel;
    const int64_t pos = (t0 + t) * stride + int64_t(k) * dilation - pad_left;
    cols[i] = (pos >= 0 && pos < in_length) ? x[c * in_length + pos] : 0.0f;
  }
}

__global__ void add_channel_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int channels,
                                        int64_t length, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[(i / length) % channels];
}

}  // namespace

void im2col(const float* x, float* cols, int in_channels, int in_length, int kernel, int stride, int pad_left,
            int dilation, int64_t t0, int64_t tile) {
  const int64_t total = int64_t(in_channels) * kernel * tile;
  if (total == 0) return;
  VC_LAUNCH(im2col_kernel, blocks_for(total, 256), 256, 0)(x, cols, in_length, kernel, stride, pad_left, dilation, t0,
                                                           tile, total);
  VC_CHECK_LAUNCH("im2col_kernel");
}

void add_channel_bias(float* y, const float* bias, int batch, int channels, int64_t length) {
  const int64_t total = int64_t(batch) * channels * length;
  if (!bias || total == 0) return;
  VC_LAUNCH(add_channel_bias_kernel, blocks_for(total, 256), 256, 0)(y, bias, channels, length, total);
  VC_CHECK_LAUNCH("add_channel_bias_kernel");
}

}  // namespace vitscuda::kernels::cuda
