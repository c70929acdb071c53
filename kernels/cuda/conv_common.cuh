// Shared by the convolution family (conv1d and conv_transpose1d, forward and backward): cuDNN
// plans, the im2col of our GEMM path, the bias add. Only .cu files include this.
//
// cuDNN: one plan per convolution shape, holding the descriptors and, found when first wanted,
// the algorithm of each of the three directions.
// A 1-D convolution is a 2-D one of height 1: input [batch, in_channels, 1, in_length], filter
// [out_channels, in_channels / groups, 1, kernel], output [batch, out_channels, 1, out_length].
// A transposed convolution is the backward-data direction of the convolution it transposes.
//
// Every algorithm is found by cuDNN's Find*Ex on the call's real inputs, once per shape and
// direction. Find writes its output buffer, so it runs on a scratch output unless the call
// overwrites its output anyway (beta = 0): accumulating gradients are never touched by it. The
// choice is the fastest deterministic algorithm that ran and fits the search workspace (so that
// results repeat bit for bit, run to run), else the fastest that ran; tensor-op (TF32) results
// are never taken, since fp32 FMA math is what keeps CUDA within float rounding of the CPU.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vitscuda::kernels::cuda {

struct CudnnConvShape {
  const char* op;  // the calling op, for error messages ("conv1d backward", ...)
  int batch, in_channels, in_length, out_channels, kernel, stride, padding, dilation, groups;
  int64_t out_length;  // what the op expects; checked against cuDNN's when the plan is made
};

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
