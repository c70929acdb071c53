// Normalisations: LayerNorm over the last dimension, LayerNorm over the channel dimension
// of [B, C, T], and weight normalisation (torch._weight_norm with dim=0), with backward.
//
// LayerNorm is computed as torch does: mean, biased variance var = mean((x - mean)^2),
// y = (x - mean) / sqrt(var + eps) * gamma + beta. Means and variances accumulate in double.
// The backward recomputes the row statistics from x instead of saving them.
#pragma once

namespace vitscuda::kernels {

// x, y [rows, C]; gamma, beta [C]. y is overwritten.
template <typename T>
void layer_norm_forward_cpu(const T* x, const T* gamma, const T* beta, T* y, int rows, int C, double eps);

// Gradients given dy [rows, C], ACCUMULATED into dx [rows, C], dgamma [C], dbeta [C] (each may be nullptr).
template <typename T>
void layer_norm_backward_cpu(const T* x, const T* gamma, const T* dy, T* dx, T* dgamma, T* dbeta, int rows, int C,
                             double eps);

// x, y [B, C, T]: each (b, t) column is normalised over its C channels; gamma, beta [C].
template <typename T>
void layer_norm_channels_forward_cpu(const T* x, const T* gamma, const T* beta, T* y, int B, int C, int T_len,
                                     double eps);

// Gradients given dy [B, C, T], ACCUMULATED into dx, dgamma, dbeta (each may be nullptr).
template <typename T>
void layer_norm_channels_backward_cpu(const T* x, const T* gamma, const T* dy, T* dx, T* dgamma, T* dbeta, int B, int C,
                                      int T_len, double eps);

// w[o, :] = v[o, :] * (g[o] / ||v[o, :]||_2) for o in [0, rows); v, w [rows, n] (n = product of the
// remaining dims), g [rows]. w is overwritten.
template <typename T>
void weight_norm_forward_cpu(const T* g, const T* v, T* w, int rows, int n);

// Gradients given dw [rows, n], ACCUMULATED into dg [rows] and dv [rows, n] (either may be nullptr):
//   dg[o] += (dw . v) / ||v||,   dv += (g / ||v||) * (dw - v * (dw . v) / ||v||^2).
template <typename T>
void weight_norm_backward_cpu(const T* g, const T* v, const T* dw, T* dg, T* dv, int rows, int n);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
void layer_norm_forward_cuda(const float* x, const float* gamma, const float* beta, float* y, int rows, int C,
                             double eps);
void layer_norm_channels_forward_cuda(const float* x, const float* gamma, const float* beta, float* y, int B, int C,
                                      int T_len, double eps);
void weight_norm_forward_cuda(const float* g, const float* v, float* w, int rows, int n);
// Backwards (same arguments as the CPU backwards; gradients ACCUMULATE, any may be nullptr).
// dgamma / dbeta (summed over all rows / columns) are reduced deterministically: per-block
// partials in scratch, then a second pass in a fixed order, so repeated runs agree bit for bit.
void layer_norm_backward_cuda(const float* x, const float* gamma, const float* dy, float* dx, float* dgamma,
                              float* dbeta, int rows, int C, double eps);
void layer_norm_channels_backward_cuda(const float* x, const float* gamma, const float* dy, float* dx, float* dgamma,
                                       float* dbeta, int B, int C, int T_len, double eps);
void weight_norm_backward_cuda(const float* g, const float* v, const float* dw, float* dg, float* dv, int rows, int n);

}  // namespace vitscuda::kernels
