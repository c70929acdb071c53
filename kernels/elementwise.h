// Pointwise and layout ops: unary activations, broadcasting binary arithmetic, the WaveNet
// gate, softmax over the last dimension, and the copies behind transpose / narrow / cat /
// flip / sum. Backward kernels ACCUMULATE (+=) into their gradient buffers. Float and double.
#pragma once
#include <cstdint>

namespace vitscuda::kernels {

enum class UnaryOp { Relu, LeakyRelu, Gelu, GeluTanh, Silu, Tanh, Sigmoid, Exp, Log, Softplus, Ceil, ClampMin, Scale, AddScalar };

// y = op(x); `param` is the slope (LeakyRelu), the bound (ClampMin) or the scalar (Scale, AddScalar).
template <typename T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, int64_t n, double param);
// dx += dy * op'(x) (y = op(x) is passed where the derivative is cheaper from it).
template <typename T>
void unary_backward_cpu(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n, double param);

enum class BinaryOp { Add, Sub, Mul, Div };

// Broadcasting over `ndim` (<= 6) dims: out_shape is the result's shape; a_strides and b_strides
// are element strides with 0 along broadcast dimensions.
template <typename T>
void binary_forward_cpu(BinaryOp op, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides, T* y,
                        const int64_t* out_shape, int ndim);
// da += dy * d(op)/da, db += dy * d(op)/db (either may be nullptr), summing over broadcast dimensions.
template <typename T>
void binary_backward_cpu(BinaryOp op, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides,
                         const T* dy, T* da, T* db, const int64_t* out_shape, int ndim);

// x [outer, 2C, inner] -> y [outer, C, inner] = tanh(x[:, :C]) * sigmoid(x[:, C:]).
template <typename T>
void gated_tanh_sigmoid_forward_cpu(const T* x, T* y, int64_t outer, int64_t C, int64_t inner);
template <typename T>
void gated_tanh_sigmoid_backward_cpu(const T* x, const T* dy, T* dx, int64_t outer, int64_t C, int64_t inner);

// Softmax over rows of length n.
template <typename T>
void softmax_forward_cpu(const T* x, T* y, int64_t rows, int64_t n);
template <typename T>
void softmax_backward_cpu(const T* y, const T* dy, T* dx, int64_t rows, int64_t n);

// Mid-dimension slices of [outer, mid, inner] blocks (narrow, cat and their backwards);
// `accumulate` adds into the destination instead of overwriting it.
// slice_gather: y [outer, len, inner] (=, +=) x [outer, mid, inner][:, start:start+len, :].
template <typename T>
void slice_gather_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner, int64_t start, int64_t len,
                      bool accumulate);
// slice_scatter: y [outer, mid, inner][:, start:start+len, :] (=, +=) x [outer, len, inner].
template <typename T>
void slice_scatter_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner, int64_t start, int64_t len,
                       bool accumulate);

// Swaps dims 1 and 3 of a [d0, d1, d2, d3, d4] view: y[a, d, c, b, e] = x[a, b, c, d, e].
template <typename T>
void swap_axes_cpu(const T* x, T* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4, bool accumulate);

// Reverses the middle dim of [outer, mid, inner]; accumulate adds into y.
template <typename T>
void flip_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner, bool accumulate);

// y += x over n elements.
template <typename T>
void accumulate_cpu(const T* x, T* y, int64_t n);

// y[outer, inner] = sum over mid of x[outer, mid, inner]; backward dx[o, m, i] += dy[o, i].
template <typename T>
void sum_mid_forward_cpu(const T* x, T* y, int64_t outer, int64_t mid, int64_t inner);
template <typename T>
void sum_mid_backward_cpu(const T* dy, T* dx, int64_t outer, int64_t mid, int64_t inner);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
void unary_forward_cuda(UnaryOp op, const float* x, float* y, int64_t n, double param);
// Strides and shape are host arrays (they travel in the kernel's arguments).
void binary_forward_cuda(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                         const int64_t* b_strides, float* y, const int64_t* out_shape, int ndim);
void gated_tanh_sigmoid_forward_cuda(const float* x, float* y, int64_t outer, int64_t C, int64_t inner);
void softmax_forward_cuda(const float* x, float* y, int64_t rows, int64_t n);
void slice_gather_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner, int64_t start, int64_t len,
                       bool accumulate);
void slice_scatter_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner, int64_t start,
                        int64_t len, bool accumulate);
void swap_axes_cuda(const float* x, float* y, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4,
                    bool accumulate);
void flip_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner, bool accumulate);
void accumulate_cuda(const float* x, float* y, int64_t n);
void sum_mid_forward_cuda(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner);
void fill_cuda(float* y, int64_t n, float value);
void unary_backward_cuda(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n,
                         double param);
// A full-shaped operand's gradient is one thread per element; a broadcast operand's sums over its
// broadcast positions in a fixed order (one thread per element below 32 positions, else one warp),
// so repeated runs give identical gradients.
void binary_backward_cuda(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                          const int64_t* b_strides, const float* dy, float* da, float* db, const int64_t* out_shape,
                          int ndim);
void gated_tanh_sigmoid_backward_cuda(const float* x, const float* dy, float* dx, int64_t outer, int64_t C,
                                      int64_t inner);
void softmax_backward_cuda(const float* y, const float* dy, float* dx, int64_t rows, int64_t n);
void sum_mid_backward_cuda(const float* dy, float* dx, int64_t outer, int64_t mid, int64_t inner);

}  // namespace vitscuda::kernels
