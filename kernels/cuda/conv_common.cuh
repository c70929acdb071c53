// Shared by the convolution family (conv1d and conv_transpose1d, forward and backward): cuDNN
// algorithm choice, the im2col of our GEMM path, the bias add. Included by the .cu files, and by
// the CUDA tests (it needs no CUDA header).
//
// A 1-D convolution is a 2-D one of height 1: input [batch, in_channels, 1, in_length], filter
// [out_channels, in_channels / groups, 1, kernel], output [batch, out_channels, 1, out_length].
// A transposed convolution is the backward-data direction of the convolution it transposes.
//
// Algorithm choice, per direction and shape class (batch, channels, kernel, stride, padding,
// dilation, groups and the input length rounded up to a power of two, conv_length_bucket): cuDNN's
// heuristic ranking (cudnnGetConvolution*Algorithm_v7, no timing, no search workspace) for the
// class's largest length, deterministic FMA algorithms first; each call takes the first candidate
// that cuDNN supports at its exact shape with a workspace of at most kMaxConvWorkspaceBytes. The
// choice is thus a function of the shape, the device and the cuDNN version only: two processes on
// the same machine choose the same algorithms and give the same bits, whatever shapes they met
// before and however much memory was free (a timed Find can pick differently run to run). Tensor-op
// (TF32) algorithms are never taken, since fp32 FMA math is what keeps CUDA within float rounding of
// the CPU. The workspace comes from the engine's allocator, so it counts against the memory budget;
// the cache of classes is bounded (least recently used out).
#pragma once
#include <cstddef>
#include <cstdint>

namespace vitscuda::kernels::cuda {

struct CudnnConvShape {
  const char* op;  // the calling op, for error messages ("conv1d backward", ...)
  int batch, in_channels, in_length, out_channels, kernel, stride, padding, dilation, groups;
  int64_t out_length;  // what the op expects; checked against cuDNN's when the plan is made
};

// At most this many shape classes are cached (a few hundred occur in VITS training).
constexpr size_t kConvPlanCacheLimit = 1024;
// The largest workspace an algorithm may ask for. A constant, not the free memory, so that the
// choice does not depend on the allocator's state.
constexpr size_t kMaxConvWorkspaceBytes = size_t(256) << 20;

// The class's length: the next power of two >= length (at least 16).
int conv_length_bucket(int length);
// The algorithm (cudnnConvolution*Algo_t) a call of this shape uses in direction 0 forward,
// 1 backward-data, 2 backward-filter.
int cudnn_conv_algorithm(const CudnnConvShape& shape, int direction);
size_t conv_plan_cache_entries();
void conv_plan_cache_clear();

// y = conv(x, w) + beta * y.
void cudnn_conv_forward(const CudnnConvShape& shape, const float* x, const float* w, float beta, float* y);
// dx = conv^T(dy) + beta * dx: the gradient of the input (and a transposed convolution's output).
void cudnn_conv_backward_data(const CudnnConvShape& shape, const float* w, const float* dy, float beta, float* dx);
// dw = the filter gradient of conv at input x and output gradient dy, + beta * dw.
void cudnn_conv_backward_filter(const CudnnConvShape& shape, const float* x, const float* dy, float beta, float* dw);

// The im2col + GEMM path tiles time so that its column buffer stays within this.
constexpr size_t kIm2colScratchBytes = size_t(64) << 20;

// cols [in_channels * kernel, tile] (rows (channel, k), channel-major, over all groups) for the
// output columns [t0, t0 + tile) of one batch item x [in_channels, in_length]; zeros where a window
// reads the padding.
void im2col(const float* x, float* cols, int in_channels, int in_length, int kernel, int stride, int pad_left,
            int dilation, int64_t t0, int64_t tile);

// y [batch, channels, length] += bias[channel]; nothing when bias is null.
void add_channel_bias(float* y, const float* bias, int batch, int channels, int64_t length);

}  // namespace vitscuda::kernels::cuda
