// What the convolution family shares; see conv_common.cuh.
#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"

namespace vitscuda::kernels::cuda {

namespace {

enum Direction { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };
const char* const kDirectionNames[] = {"forward", "backward-data", "backward-filter"};

// The descriptors of the call at hand, set anew for each call (cheap host calls; one set suffices
// since calls are serialised by g_mutex).
struct Descriptors {
  cudnnTensorDescriptor_t in = nullptr, out = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
};

// A shape class: one direction of one convolution, its batch, and its input length rounded up to
// a power of two. Its candidates are cuDNN's heuristic ranking for the class's representative shape
// (the bucket's largest length), deterministic FMA algorithms first.
using ClassKey = std::tuple<int, int, int, int, int, int, int, int, int, int>;
struct ClassEntry {
  std::vector<int> candidates;
  uint64_t last_use = 0;
};

std::mutex g_mutex;  // the cache and the descriptors, and each call (one stream, one cuDNN handle)
std::map<ClassKey, ClassEntry> g_classes;
uint64_t g_use_clock = 0;

std::string describe(const CudnnConvShape& s) {
  std::ostringstream os;
  os << "input [" << s.batch << ", " << s.in_channels << ", " << s.in_length << "], filter [" << s.out_channels << ", "
     << s.in_channels / s.groups << ", " << s.kernel << "], stride " << s.stride << ", padding " << s.padding
     << ", dilation " << s.dilation << ", groups " << s.groups;
  return os.str();
}

Descriptors& descriptors() {
  static Descriptors d = [] {
    Descriptors n;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&n.in));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&n.out));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&n.w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&n.conv));
    return n;
  }();
  return d;
}

// Sets the descriptors for shape s with input length in_length (the call's own, or a class's
// representative) and returns cuDNN's output length.
int set_descriptors(Descriptors& d, const CudnnConvShape& s, int in_length) {
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.in, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.batch, s.in_channels, 1,
                                         in_length));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.out_channels,
                                         s.in_channels / s.groups, 1, s.kernel));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d.conv, 0, s.padding, 1, s.stride, 1, s.dilation,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionGroupCount(d.conv, s.groups));
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, CUDNN_FMA_MATH));  // no TF32
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv, d.in, d.w, &on, &oc, &oh, &ow));
  VC_CHECK(on == s.batch && oc == s.out_channels && oh == 1 && ow >= 1,
           s.op << ": cuDNN's output shape [" << on << ", " << oc << ", " << oh << ", " << ow << "] for input length "
                << in_length << " is not [" << s.batch << ", " << s.out_channels << ", 1, >= 1] (" << describe(s)
                << ")");
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.out, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.batch, s.out_channels, 1, ow));
  return ow;
}

// The ranking: deterministic FMA algorithms in the heuristic's order, then non-deterministic FMA
// ones (used only where no deterministic one can run). Tensor-op results are never taken.
template <typename Perf>
std::vector<int> rank(const Perf* perf, int returned) {
  std::vector<int> ranked;
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < returned; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      if (perf[i].mathType == CUDNN_TENSOR_OP_MATH || perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        continue;
      if ((perf[i].determinism == CUDNN_DETERMINISTIC) != (pass == 0)) continue;
      const int algo = static_cast<int>(perf[i].algo);
      if (std::find(ranked.begin(), ranked.end(), algo) == ranked.end()) ranked.push_back(algo);
    }
  return ranked;
}

std::vector<int> heuristic_ranking(Direction dir, const Descriptors& d) {
  cudnnHandle_t h = cudnn_handle();
  int returned = 0;
  if (dir == kForward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.in, d.w, d.conv, d.out, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                       &returned, perf));
    return rank(perf, returned);
  }
  if (dir == kBackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.out, d.conv, d.in,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
    return rank(perf, returned);
  }
  cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.in, d.out, d.conv, d.w,
                                                            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
  return rank(perf, returned);
}

// The workspace algo needs for the shape in d, or false where cuDNN does not support it there.
bool workspace_for(Direction dir, const Descriptors& d, int algo, size_t* bytes) {
  cudnnHandle_t h = cudnn_handle();
  cudnnStatus_t st;
  if (dir == kForward)
    st = cudnnGetConvolutionForwardWorkspaceSize(h, d.in, d.w, d.conv, d.out,
                                                 static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
  else if (dir == kBackwardData)
    st = cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.out, d.conv, d.in,
                                                      static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
  else
    st = cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.in, d.out, d.conv, d.w,
                                                        static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  return st == CUDNN_STATUS_SUCCESS;
}

const ClassEntry& class_for(Direction dir, const CudnnConvShape& s) {
  const int bucket = conv_length_bucket(s.in_length);
  const ClassKey key{dir, s.batch, s.in_channels, s.out_channels, s.kernel, s.stride, s.padding, s.dilation, s.groups,
                     bucket};
  auto it = g_classes.find(key);
  if (it == g_classes.end()) {
    if (g_classes.size() >= kConvPlanCacheLimit) {  // evict the least recently used class
      auto oldest = g_classes.begin();
      for (auto c = g_classes.begin(); c != g_classes.end(); ++c)
        if (c->second.last_use < oldest->second.last_use) oldest = c;
      g_classes.erase(oldest);
    }
    Descriptors& d = descriptors();
    set_descriptors(d, s, bucket);
    it = g_classes.emplace(key, ClassEntry{heuristic_ranking(dir, d), 0}).first;
  }
  it->second.last_use = ++g_use_clock;
  return it->second;
}

struct Choice {
  int algo = -1;
  size_t workspace = 0;
};

// Sets the descriptors to the call's shape and picks the first candidate of its class that cuDNN
// supports there within kMaxConvWorkspaceBytes. A function of the shape alone: every process makes
// the same choice, whatever it ran before or how much memory is free.
Choice choose(Direction dir, const CudnnConvShape& s) {
  VC_CHECK(s.out_length >= 1 && s.out_length <= INT_MAX,
           s.op << ": output length " << s.out_length << " is outside cuDNN's int dimensions (" << describe(s) << ")");
  const ClassEntry& c = class_for(dir, s);
  Descriptors& d = descriptors();
  const int ow = set_descriptors(d, s, s.in_length);
  VC_CHECK(ow == s.out_length, s.op << ": cuDNN's output length " << ow << " differs from the expected "
                                    << s.out_length << " (" << describe(s) << ")");
  for (const int algo : c.candidates) {
    size_t bytes = 0;
    if (workspace_for(dir, d, algo, &bytes) && bytes <= kMaxConvWorkspaceBytes) return Choice{algo, bytes};
  }
  // None of the class's candidates runs at this length: the heuristic for the shape itself.
  for (const int algo : heuristic_ranking(dir, d)) {
    size_t bytes = 0;
    if (workspace_for(dir, d, algo, &bytes) && bytes <= kMaxConvWorkspaceBytes) return Choice{algo, bytes};
  }
  VC_FAIL(s.op << ": cuDNN has no usable " << kDirectionNames[dir] << " algorithm (FMA math, workspace up to "
               << (kMaxConvWorkspaceBytes >> 20) << " MiB) for " << describe(s));
}

}  // namespace

int conv_length_bucket(int length) {
  int bucket = 16;
  while (bucket < length && bucket < (INT_MAX >> 1)) bucket *= 2;
  return bucket < length ? length : bucket;
}

int cudnn_conv_algorithm(const CudnnConvShape& s, int direction) {
  VC_CHECK(direction >= 0 && direction <= 2, "cudnn_conv_algorithm: direction " << direction << " is not 0, 1 or 2");
  std::lock_guard<std::mutex> lock(g_mutex);
  return choose(static_cast<Direction>(direction), s).algo;
}

size_t conv_plan_cache_entries() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_classes.size();
}

void conv_plan_cache_clear() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_classes.clear();
}

void cudnn_conv_forward(const CudnnConvShape& s, const float* x, const float* w, float beta, float* y) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Choice c = choose(kForward, s);
  const Descriptors& d = descriptors();
  Scratch workspace(c.workspace, "cuDNN convolution workspace");
  const float one = 1.0f;
  CUDNN_CHECK(cudnnConvolutionForward(cudnn_handle(), &one, d.in, x, d.w, w, d.conv,
                                      static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), workspace.get(), c.workspace,
                                      &beta, d.out, y));
}

void cudnn_conv_backward_data(const CudnnConvShape& s, const float* w, const float* dy, float beta, float* dx) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Choice c = choose(kBackwardData, s);
  const Descriptors& d = descriptors();
  Scratch workspace(c.workspace, "cuDNN backward-data workspace");
  const float one = 1.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_handle(), &one, d.w, w, d.out, dy, d.conv,
                                           static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), workspace.get(),
                                           c.workspace, &beta, d.in, dx));
}

void cudnn_conv_backward_filter(const CudnnConvShape& s, const float* x, const float* dy, float beta, float* dw) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Choice c = choose(kBackwardFilter, s);
  const Descriptors& d = descriptors();
  Scratch workspace(c.workspace, "cuDNN backward-filter workspace");
  const float one = 1.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn_handle(), &one, d.in, x, d.out, dy, d.conv,
                                             static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), workspace.get(),
                                             c.workspace, &beta, d.w, dw));
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
