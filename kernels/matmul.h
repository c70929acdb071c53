// Dense matrix products: batched matmul and the linear layer (x W^T + b), with backward.
// All matrices are contiguous row-major; products go to cblas_sgemm / cblas_dgemm.
#pragma once

namespace vitscuda::kernels {

// c[i] = a[i] @ b[i] for i in [0, batch): a [batch, M, K], b [batch, K, N], c [batch, M, N] (overwritten).
template <typename T>
void matmul_forward_cpu(const T* a, const T* b, T* c, int batch, int M, int K, int N);

// Gradients given dc [batch, M, N], ACCUMULATED: da += dc b^T, db += a^T dc. da or db may be nullptr
// (then b, resp. a, is not read and may be nullptr too).
template <typename T>
void matmul_backward_cpu(const T* a, const T* b, const T* dc, T* da, T* db, int batch, int M, int K, int N);

// y [rows, out] = x [rows, in] @ w[out, in]^T + bias[out] (bias may be nullptr). y is overwritten.
template <typename T>
void linear_forward_cpu(const T* x, const T* w, const T* bias, T* y, int rows, int in, int out);

// Gradients given dy [rows, out], ACCUMULATED: dx += dy w, dw += dy^T x, dbias += sum over rows of dy.
// Any of dx, dw, dbias may be nullptr; x is read only for dw and w only for dx.
template <typename T>
void linear_backward_cpu(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int rows, int in, int out);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
// VC_KERNEL (engine/dispatch.h) calls these `*_cuda` functions by token pasting (kernel##_cuda).
// cuBLAS, full fp32 math (no TF32).
void matmul_forward_cuda(const float* a, const float* b, float* c, int batch, int M, int K, int N);
void linear_forward_cuda(const float* x, const float* w, const float* bias, float* y, int rows, int in, int out);
// Backward (kernels/cuda/matmul_backward.cu): cuBLAS with beta = 1; dbias by a deterministic reduction.
void matmul_backward_cuda(const float* a, const float* b, const float* dc, float* da, float* db, int batch, int M,
                          int K, int N);
void linear_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* dbias,
                          int rows, int in, int out);

}  // namespace vitscuda::kernels
