// Building blocks shared by the CPU convolution and matrix kernels: a typed cblas gemm
// that tolerates empty dimensions, and im2col / col2im over a window of output columns.
// Internal to kernels/cpu.
//
// Threading: OpenBLAS is its OpenMP build (CMakeLists.txt), so its threads and those of the loops
// here are one libgomp pool, and the im2col / col2im / bias loops run in parallel between the gemms.
// (With OpenBLAS's pthread build the two pools' spin-waiting threads fought for the cores: on 2 cores
// that halved conv1d's speed, 0.23 s instead of 0.11 s for [1, 256, 20000], K=7.) Every element is
// still summed by one thread in the serial order, so results do not depend on the thread count.
#pragma once
#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/blas_setup.h"

namespace vitscuda::kernels::detail {

inline void gemm_raw(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float* a, int lda,
                     const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm_raw(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const double* a,
                     int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C (beta is 0 or 1 in this code base).
// Empty products are handled here: BLAS rejects a leading dimension of 0, and with k == 0
// the product is zero, so C only keeps beta * C.
template <typename T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta,
          T* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        T& cij = c[static_cast<int64_t>(i) * ldc + j];
        cij = beta == T(0) ? T(0) : beta * cij;
      }
    return;
  }
  ensure_blas_kernels();
  gemm_raw(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
           std::max(lda, 1), b, std::max(ldb, 1), beta, c, std::max(ldc, 1));
}

// Below this many elements a copy loop stays serial (a parallel region costs more than it saves).
constexpr int64_t kParallelCopy = int64_t(1) << 16;

// The output columns j in [0, n) whose input position offset + j * stride lies in [0, length):
// returns [*lo, *hi) (empty when *lo >= *hi).
inline void valid_columns(int64_t offset, int64_t stride, int64_t length, int64_t n, int64_t* lo, int64_t* hi) {
  int64_t first = 0;
  if (offset < 0) first = (-offset + stride - 1) / stride;
  int64_t end = 0;
  if (offset < length) end = (length - 1 - offset) / stride + 1;
  *lo = std::min(first, n);
  *hi = std::max(*lo, std::min(end, n));
}

// Convolution windows of one signal x [channels, length] for output columns [t0, t0 + n):
// col[(c * K + k) * n + j] = x[c, (t0 + j) * stride + k * dilation - pad_left], 0 outside the signal.
template <typename T>
void im2col(const T* x, int channels, int length, int K, int stride, int pad_left, int dilation, int64_t t0, int64_t n,
            T* col) {
  const int64_t rows = static_cast<int64_t>(channels) * K;
#pragma omp parallel for schedule(static) if (rows * n >= kParallelCopy)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / K, k = r % K;
    const T* xc = x + c * length;
    T* out = col + r * n;
    const int64_t offset = t0 * stride + k * dilation - pad_left;
    int64_t lo, hi;
    valid_columns(offset, stride, length, n, &lo, &hi);
    for (int64_t j = 0; j < lo; ++j) out[j] = T(0);
    if (stride == 1) {
      for (int64_t j = lo; j < hi; ++j) out[j] = xc[offset + j];
    } else {
      for (int64_t j = lo; j < hi; ++j) out[j] = xc[offset + j * stride];
    }
    for (int64_t j = hi; j < n; ++j) out[j] = T(0);
  }
}

// The adjoint of im2col: x[c, (t0 + j) * stride + k * dilation - pad_left] += col[(c * K + k) * n + j]
// for positions inside the signal.
template <typename T>
void col2im_add(const T* col, int channels, int length, int K, int stride, int pad_left, int dilation, int64_t t0,
                int64_t n, T* x) {
  // One thread per channel: a channel's K rows all land in its own row of x.
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(channels) * K * n >= kParallelCopy)
  for (int c = 0; c < channels; ++c) {
    T* xc = x + static_cast<int64_t>(c) * length;
    for (int k = 0; k < K; ++k) {
      const T* in = col + (static_cast<int64_t>(c) * K + k) * n;
      const int64_t offset = t0 * stride + static_cast<int64_t>(k) * dilation - pad_left;
      int64_t lo, hi;
      valid_columns(offset, stride, length, n, &lo, &hi);
      if (stride == 1) {
        for (int64_t j = lo; j < hi; ++j) xc[offset + j] += in[j];
      } else {
        for (int64_t j = lo; j < hi; ++j) xc[offset + j * stride] += in[j];
      }
    }
  }
}

// db[o] += sum over batch and time of dy[n, o, t], dy [B, Cout, T]: summed in double, one thread per o, the
// time loop in vector lanes (a fixed order for a given build, whatever the thread count).
template <typename T>
void bias_backward(const T* dy, T* db, int B, int Cout, int64_t T_len) {
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(B) * Cout * T_len >= kParallelCopy)
  for (int o = 0; o < Cout; ++o) {
    double sum = 0.0;
    for (int n = 0; n < B; ++n) {
      const T* row = dy + (static_cast<int64_t>(n) * Cout + o) * T_len;
#pragma omp simd reduction(+ : sum)
      for (int64_t t = 0; t < T_len; ++t) sum += static_cast<double>(row[t]);
    }
    db[o] += static_cast<T>(sum);
  }
}

// Output columns per im2col tile: bounded scratch (about kColumnBudget elements) but wide
// enough for gemm to run at full speed. Several threads with a buffer each (one sample per
// thread) share the budget, which keeps each buffer nearer its core's cache.
inline int64_t tile_columns(int64_t rows, int64_t total, int threads = 1) {
  const int64_t kColumnBudget = (int64_t(1) << 20) / std::max(threads, 1);
  constexpr int64_t kMinColumns = 256;
  const int64_t n = std::max(kMinColumns, kColumnBudget / std::max<int64_t>(rows, 1));
  return std::max<int64_t>(1, std::min(n, total));
}

}  // namespace vitscuda::kernels::detail
