// 1-D convolution (PyTorch nn.Conv1d semantics, cross-correlation) and its backward.
//
// Layouts: x [B, Cin, Tin], w [Cout, Cin/groups, K], b [Cout], y [B, Cout, Tout] with
//   Tout = (Tin + pad_left + pad_right - dilation*(K-1) - 1) / stride + 1
//   y[n, o, t] = b[o] + sum_{i, k} w[o, i, k] * x[n, g*Cin/groups + i, t*stride + k*dilation - pad_left]
// where g = o / (Cout/groups) and x is zero outside [0, Tin).
//
// CPU: float32 through oneDNN's JIT convolutions where they take the geometry (kernels/cpu/onednn_conv.h, what
// PyTorch runs on CPUs); else for stride 1 and >= 8 input channels per group, one gemm per kernel tap reading x in
// place (kernels/cpu/conv1d.cpp); otherwise im2col over tiles of output columns + gemm per (batch, group); a direct
// loop when each group has one input channel (depthwise); a plain gemm for 1x1 convolutions. With a sample per
// thread, the samples run in parallel with single-threaded gemms (dw: per-thread sums added in thread order,
// so results depend on the thread count, not on the run).
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

// Output length, or a value <= 0 when the padded input is shorter than the dilated kernel.
inline int64_t conv1d_output_length(int64_t Tin, int K, int stride, int pad_left, int pad_right, int dilation) {
  const int64_t span = static_cast<int64_t>(dilation) * (K - 1) + 1;
  const int64_t padded = Tin + pad_left + pad_right;
  if (padded < span) return 0;
  return (padded - span) / stride + 1;
}

// The argument checks of every conv1d kernel, CPU and CUDA alike: an error naming `who` for bad
// sizes, stride, dilation, padding or groups, or an input shorter than the dilated kernel; else the
// output length.
int64_t conv1d_checked_output_length(const char* who, int B, int Cin, int Tin, int Cout, int K, int stride,
                                     int pad_left, int pad_right, int dilation, int groups);

// y = conv1d(x, w) + b (b may be nullptr). y is overwritten.
template <typename T>
void conv1d_forward_cpu(const T* x, const T* w, const T* b, T* y, int B, int Cin, int Tin, int Cout, int K, int stride,
                        int pad_left, int pad_right, int dilation, int groups);

// Gradients of conv1d given dy [B, Cout, Tout]. Every gradient is ACCUMULATED into its buffer
// (dx += ..., dw += ..., db += ...), so callers zero them first and gradient accumulation over
// micro-batches needs no extra buffer. Any of dx, dw, db may be nullptr (not wanted); x is read
// only for dw and w only for dx, so either may be nullptr when that gradient is not wanted.
template <typename T>
void conv1d_backward_cpu(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int B, int Cin, int Tin, int Cout,
                         int K, int stride, int pad_left, int pad_right, int dilation, int groups);

// The CPU path of the convolutions with more than one input channel per group and more than one tap: Auto
// (float32: oneDNN where its JIT kernels take the geometry; otherwise tap products for stride 1 with enough
// channels, im2col for the rest), or one of our own forced, for tests that compare them.
// Process-wide; not thread-safe against running convolutions.
enum class Conv1dCpuPath { Auto, Taps, Im2col };
void conv1d_set_cpu_path(Conv1dCpuPath path);
// Convolutions (forward and backward calls) oneDNN has run in this process: tests check that it runs where it
// should, rather than our kernels silently standing in.
int64_t conv1d_cpu_onednn_runs();

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
// cuDNN with its algorithm chosen per shape class (kernels/cuda/conv_common.cuh), or our im2col + cuBLAS
// kernel where cuDNN cannot (asymmetric padding) or is set aside (conv1d_set_cuda_path).
void conv1d_forward_cuda(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin, int Cout,
                         int K, int stride, int pad_left, int pad_right, int dilation, int groups);
// Backward (kernels/cuda/conv1d_backward.cu): same arguments and accumulation as the CPU backward.
// On the forward's path: cuDNN backward-data / backward-filter (beta = 1, algorithms chosen per
// shape class, deterministic ones preferred), or im2col + cuBLAS
// with a col2im gather; db by a deterministic reduction.
void conv1d_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int B,
                          int Cin, int Tin, int Cout, int K, int stride, int pad_left, int pad_right, int dilation,
                          int groups);
enum class Conv1dCudaPath { Auto, Cudnn, Im2colGemm };
// Forces a path (benchmarks and parity tests compare them); Auto uses cuDNN when it can.
void conv1d_set_cuda_path(Conv1dCudaPath path);
Conv1dCudaPath conv1d_cuda_path();

}  // namespace vitscuda::kernels
