// 1-D transposed convolution (PyTorch nn.ConvTranspose1d with groups=1, dilation=1,
// output_padding=0) and its backward.
//
// Layouts: x [B, Cin, Tin], w [Cin, Cout, K] (PyTorch's layout), b [Cout], y [B, Cout, Tout] with
//   Tout = (Tin - 1)*stride - 2*padding + K
//   y[n, o, t*stride + k - padding] += x[n, i, t] * w[i, o, k]   (positions outside [0, Tout) dropped)
//
// CPU: per batch element and tile of input columns, cols = W^T X by gemm (rows (o, k)), then an
// overlap-add (col2im) into y. The backward is the matching im2col of dy and two gemms.
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

inline int64_t conv_transpose1d_output_length(int64_t Tin, int K, int stride, int padding) {
  return (Tin - 1) * stride - 2 * static_cast<int64_t>(padding) + K;
}

// The argument checks of every conv_transpose1d kernel, CPU and CUDA alike: an error naming `who`
// for bad sizes, stride or padding, or an output length below 1; else the output length.
int64_t conv_transpose1d_checked_output_length(const char* who, int B, int Cin, int Tin, int Cout, int K, int stride,
                                               int padding);

// y = conv_transpose1d(x, w) + b (b may be nullptr). y is overwritten.
template <typename T>
void conv_transpose1d_forward_cpu(const T* x, const T* w, const T* b, T* y, int B, int Cin, int Tin, int Cout, int K,
                                  int stride, int padding);

// Gradients given dy [B, Cout, Tout], ACCUMULATED into dx, dw, db (each may be nullptr). x is read
// only for dw and w only for dx, so either may be nullptr when that gradient is not wanted.
template <typename T>
void conv_transpose1d_backward_cpu(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int B, int Cin, int Tin,
                                   int Cout, int K, int stride, int padding);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
// cuDNN's backward-data convolution (a transposed convolution is the input gradient of a convolution).
void conv_transpose1d_forward_cuda(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Tin,
                                   int Cout, int K, int stride, int padding);
// Backward (kernels/cuda/conv_transpose1d_backward.cu): dx += the convolution of dy by w
// (cudnnConvolutionForward, beta = 1), dw += its filter gradient (cudnnConvolutionBackwardFilter,
// beta = 1), db by a deterministic reduction. Same arguments and accumulation as the CPU backward.
void conv_transpose1d_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                    int B, int Cin, int Tin, int Cout, int K, int stride, int padding);

}  // namespace vitscuda::kernels
