#include "kernels/matmul.h"

#include <cstdint>
#include <vector>

#include "common/error.h"
#include "kernels/cpu/im2col_gemm.h"

namespace vitscuda::kernels {

using detail::gemm;

namespace {
void check_sizes(const char* who, int a, int b, int c, int d) {
  VC_CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0,
           who << ": negative size in (" << a << ", " << b << ", " << c << ", " << d << ")");
}
}  // namespace

template <typename T>
void matmul_forward_cpu(const T* a, const T* b, T* c, int batch, int M, int K, int N) {
  check_sizes("matmul", batch, M, K, N);
  const int64_t sa = static_cast<int64_t>(M) * K, sb = static_cast<int64_t>(K) * N, sc = static_cast<int64_t>(M) * N;
  for (int i = 0; i < batch; ++i) gemm(false, false, M, N, K, T(1), a + i * sa, K, b + i * sb, N, T(0), c + i * sc, N);
}

template <typename T>
void matmul_backward_cpu(const T* a, const T* b, const T* dc, T* da, T* db, int batch, int M, int K, int N) {
  check_sizes("matmul backward", batch, M, K, N);
  const int64_t sa = static_cast<int64_t>(M) * K, sb = static_cast<int64_t>(K) * N, sc = static_cast<int64_t>(M) * N;
  for (int i = 0; i < batch; ++i) {
    // da [M, K] += dc [M, N] b^T;  db [K, N] += a^T dc.
    if (da) gemm(false, true, M, K, N, T(1), dc + i * sc, N, b + i * sb, N, T(1), da + i * sa, K);
    if (db) gemm(true, false, K, N, M, T(1), a + i * sa, K, dc + i * sc, N, T(1), db + i * sb, N);
  }
}

template <typename T>
void linear_forward_cpu(const T* x, const T* w, const T* bias, T* y, int rows, int in, int out) {
  check_sizes("linear", rows, in, out, 0);
  if (bias) {  // serial: the gemm right after owns the cores (see im2col_gemm.h)
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) y[static_cast<int64_t>(r) * out + o] = bias[o];
  }
  gemm(false, true, rows, out, in, T(1), x, in, w, in, bias ? T(1) : T(0), y, out);
}

template <typename T>
void linear_backward_cpu(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int rows, int in, int out) {
  check_sizes("linear backward", rows, in, out, 0);
  if (dx) gemm(false, false, rows, in, out, T(1), dy, out, w, in, T(1), dx, in);  // [rows, in] += dy w
  if (dw) gemm(true, false, out, in, rows, T(1), dy, out, x, in, T(1), dw, in);   // [out, in] += dy^T x
  if (dbias) {
    std::vector<double> sum(static_cast<size_t>(out), 0.0);
    for (int r = 0; r < rows; ++r) {
      const T* row = dy + static_cast<int64_t>(r) * out;
      for (int o = 0; o < out; ++o) sum[o] += row[o];
    }
    for (int o = 0; o < out; ++o) dbias[o] += static_cast<T>(sum[o]);
  }
}

#define VITSCUDA_INSTANTIATE_MATMUL(T)                                                            \
  template void matmul_forward_cpu<T>(const T*, const T*, T*, int, int, int, int);                \
  template void matmul_backward_cpu<T>(const T*, const T*, const T*, T*, T*, int, int, int, int); \
  template void linear_forward_cpu<T>(const T*, const T*, const T*, T*, int, int, int);           \
  template void linear_backward_cpu<T>(const T*, const T*, const T*, T*, T*, T*, int, int, int);

VITSCUDA_INSTANTIATE_MATMUL(float)
VITSCUDA_INSTANTIATE_MATMUL(double)
#undef VITSCUDA_INSTANTIATE_MATMUL

}  // namespace vitscuda::kernels
