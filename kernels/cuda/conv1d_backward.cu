// conv1d backward on the GPU, on the same two paths as the forward (conv1d.cu):
//  - cuDNN (symmetric padding, unless conv1d_set_cuda_path(Im2colGemm)): dx by
//    cudnnConvolutionBackwardData and dw by cudnnConvolutionBackwardFilter, both with beta = 1
//    so they accumulate. Each algorithm is found once per shape by the Find*Ex functions on the
//    real inputs and cached. Find*Ex writes its output buffer, so the search runs on a scratch
//    output, never on dx / dw (which hold gradients being accumulated).
//  - im2col + cuBLAS (asymmetric padding, or forced): per batch item and tile of output
//    columns, dw_g += dy_g cols_g^T (cols = im2col(x)), and dcols_g = w_g^T dy_g followed by a
//    col2im gather: one thread per input element sums the window entries that read it, so no
//    atomics are needed and the result is deterministic.
// db is a deterministic reduction (bias_grad.cuh). fp32 FMA math only (no TF32).
#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>

#include "kernels/conv1d.h"
#include "kernels/cuda/bias_grad.cuh"
#include "kernels/cuda/common.cuh"

namespace vitscuda::kernels {

namespace {

// The CPU reference's argument checks, with the same messages.
int64_t checked_output_length(int B, int Cin, int Tin, int Cout, int K, int stride, int pad_left, int pad_right,
                              int dilation, int groups) {
  const char* who = "conv1d backward";
  VC_CHECK(B >= 0 && Cin > 0 && Tin >= 0 && Cout > 0 && K > 0,
           who << ": invalid sizes B=" << B << " Cin=" << Cin << " Tin=" << Tin << " Cout=" << Cout << " K=" << K);
  VC_CHECK(stride >= 1 && dilation >= 1 && pad_left >= 0 && pad_right >= 0,
           who << ": invalid stride " << stride << ", dilation " << dilation << " or padding (" << pad_left << ", "
               << pad_right << ")");
  VC_CHECK(groups >= 1 && Cin % groups == 0 && Cout % groups == 0,
           who << ": groups " << groups << " must divide Cin " << Cin << " and Cout " << Cout);
  const int64_t Tout = conv1d_output_length(Tin, K, stride, pad_left, pad_right, dilation);
  VC_CHECK(Tout >= 1, who << ": input length " << Tin << " with padding (" << pad_left << ", " << pad_right
                          << ") is shorter than the dilated kernel " << int64_t(dilation) * (K - 1) + 1);
  return Tout;
}

// ---------------------------------------------------------------- im2col + GEMM

// cols [Cin * K, tile] (rows (channel, k) over all groups) for output columns [t0, t0 + tile) of
// one batch item; as conv1d.cu's forward im2col.
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ cols, int Tin, int K, int stride,
                              int pad_left, int dilation, int64_t t0, int64_t tile, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i % tile;
    const int64_t row = i / tile;
    const int k = static_cast<int>(row % K);
    const int64_t c = row / K;
    const int64_t pos = (t0 + t) * stride + int64_t(k) * dilation - pad_left;
    cols[i] = (pos >= 0 && pos < Tin) ? x[c * Tin + pos] : 0.0f;
  }
}

// The adjoint of im2col_kernel for input positions [p0, p0 + plen) of every channel:
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

constexpr size_t kIm2colScratchBytes = size_t(64) << 20;  // as the forward: bounds the column buffer

void conv1d_backward_im2col(const float* x, const float* w, const float* dy, float* dx, float* dw, int B, int Cin,
                            int Tin, int Cout, int K, int stride, int pad_left, int dilation, int groups, int64_t Tout) {
  const int cin_g = Cin / groups, cout_g = Cout / groups;
  const int64_t rows = int64_t(cin_g) * K;  // per group
  VC_CHECK(rows <= INT_MAX, "conv1d backward: " << cin_g << " input channels per group times kernel size " << K
                                                << " exceeds cuBLAS's int dimensions");
  const int64_t per_column = rows * groups * int64_t(sizeof(float));
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(Tout, int64_t(kIm2colScratchBytes) / per_column));
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
      const int64_t total = rows * groups * len;
      if (dw) {
        VC_LAUNCH(im2col_kernel, cuda::blocks_for(total, 256), 256, 0)(xn, cols.as<float>(), Tin, K, stride, pad_left,
                                                                        dilation, t0, len, total);
        VC_CHECK_LAUNCH("conv1d backward im2col");
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

struct BackwardPlan {
  cudnnTensorDescriptor_t x_desc = nullptr, y_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  bool have_data_algo = false, have_filter_algo = false;  // each searched when first wanted
  cudnnConvolutionBwdDataAlgo_t data_algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  cudnnConvolutionBwdFilterAlgo_t filter_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  size_t data_workspace = 0, filter_workspace = 0;
};

using ConvKey = std::tuple<int, int, int, int, int, int, int, int, int>;
std::mutex g_plans_mutex;
std::map<ConvKey, BackwardPlan> g_plans;  // descriptors live for the process, one set per shape

constexpr size_t kMaxFindWorkspace = size_t(256) << 20;

// Picks from Find's results (sorted fastest first): the fastest deterministic algorithm that
// ran and fits the workspace (so that gradients are reproducible run to run), else the
// fastest that ran at all. Tensor-op results are skipped (fp32 FMA math only).
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

// The search workspace: kMaxFindWorkspace, or none when memory is tight (then only algorithms
// without a workspace are considered).
cuda::Scratch search_workspace(size_t* limit) {
  *limit = kMaxFindWorkspace;
  try {
    return cuda::Scratch(*limit, "cuDNN algorithm search workspace");
  } catch (const Error&) {
    *limit = 0;
    return cuda::Scratch();
  }
}

BackwardPlan& backward_plan(int B, int Cin, int Tin, int Cout, int K, int stride, int pad, int dilation, int groups,
                            int64_t Tout) {
  const ConvKey key{B, Cin, Tin, Cout, K, stride, pad, dilation, groups};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second;
  BackwardPlan p;
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
           "conv1d backward: cuDNN output shape [" << on << ", " << oc << ", " << oh << ", " << ow
                                                   << "] differs from the expected [" << B << ", " << Cout << ", 1, "
                                                   << Tout << "]");
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cout, 1, ow));
  return g_plans.emplace(key, p).first->second;
}

std::string shape_text(int B, int Cin, int Tin, int Cout, int K, int groups) {
  std::ostringstream os;
  os << "x [" << B << ", " << Cin << ", " << Tin << "], weight [" << Cout << ", " << Cin / groups << ", " << K << "]";
  return os.str();
}

void conv1d_backward_cudnn(const float* x, const float* w, const float* dy, float* dx, float* dw, int B, int Cin,
                           int Tin, int Cout, int K, int stride, int pad, int dilation, int groups, int64_t Tout) {
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  BackwardPlan& p = backward_plan(B, Cin, Tin, Cout, K, stride, pad, dilation, groups, Tout);
  const float one = 1.0f;
  if (dx) {
    if (!p.have_data_algo) {
      // The search writes its output: give it a scratch dx, not the accumulating one.
      cuda::Scratch out(sizeof(float) * size_t(B) * Cin * Tin, "cuDNN backward-data search output");
      size_t limit = 0;
      cuda::Scratch workspace = search_workspace(&limit);
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      int found = 0;
      CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
          cuda::cudnn_handle(), p.w_desc, w, p.y_desc, dy, p.conv_desc, p.x_desc, out.get(),
          CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf, workspace.get(), limit));
      VC_CHECK(choose_algorithm(perf, found, limit, &p.data_algo, &p.data_workspace),
               "conv1d backward: cuDNN found no usable backward-data algorithm for "
                   << shape_text(B, Cin, Tin, Cout, K, groups));
      p.have_data_algo = true;
    }
    cuda::Scratch workspace(p.data_workspace, "cuDNN backward-data workspace");
    CUDNN_CHECK(cudnnConvolutionBackwardData(cuda::cudnn_handle(), &one, p.w_desc, w, p.y_desc, dy, p.conv_desc,
                                             p.data_algo, workspace.get(), p.data_workspace, &one, p.x_desc, dx));
  }
  if (dw) {
    if (!p.have_filter_algo) {
      cuda::Scratch out(sizeof(float) * size_t(Cout) * (Cin / groups) * K, "cuDNN backward-filter search output");
      size_t limit = 0;
      cuda::Scratch workspace = search_workspace(&limit);
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int found = 0;
      CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
          cuda::cudnn_handle(), p.x_desc, x, p.y_desc, dy, p.conv_desc, p.w_desc, out.get(),
          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf, workspace.get(), limit));
      VC_CHECK(choose_algorithm(perf, found, limit, &p.filter_algo, &p.filter_workspace),
               "conv1d backward: cuDNN found no usable backward-filter algorithm for "
                   << shape_text(B, Cin, Tin, Cout, K, groups));
      p.have_filter_algo = true;
    }
    cuda::Scratch workspace(p.filter_workspace, "cuDNN backward-filter workspace");
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(cuda::cudnn_handle(), &one, p.x_desc, x, p.y_desc, dy, p.conv_desc,
                                               p.filter_algo, workspace.get(), p.filter_workspace, &one, p.w_desc,
                                               dw));
  }
}

}  // namespace

void conv1d_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int B,
                          int Cin, int Tin, int Cout, int K, int stride, int pad_left, int pad_right, int dilation,
                          int groups) {
  const int64_t Tout = checked_output_length(B, Cin, Tin, Cout, K, stride, pad_left, pad_right, dilation, groups);
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
