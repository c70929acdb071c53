#include "kernels/conv_transpose1d.h"

#include <vector>

#include "common/error.h"
#include "kernels/cpu/im2col_gemm.h"

namespace vitscuda::kernels {

namespace {

using detail::bias_backward;
using detail::col2im_add;
using detail::gemm;
using detail::im2col;
using detail::tile_columns;

}  // namespace

int64_t conv_transpose1d_checked_output_length(const char* who, int B, int Cin, int Tin, int Cout, int K, int stride,
                                               int padding) {
  VC_CHECK(B >= 0 && Cin > 0 && Tin >= 1 && Cout > 0 && K > 0,
           who << ": invalid sizes B=" << B << " Cin=" << Cin << " Tin=" << Tin << " Cout=" << Cout << " K=" << K);
  VC_CHECK(stride >= 1 && padding >= 0, who << ": invalid stride " << stride << " or padding " << padding);
  const int64_t Tout = conv_transpose1d_output_length(Tin, K, stride, padding);
  VC_CHECK(Tout >= 1, who << ": output length " << Tout << " for Tin " << Tin << ", K " << K << ", stride " << stride
                          << ", padding " << padding);
  return Tout;
}

// Output position (t0 + j)*stride + k - padding of input column t0 + j is exactly the input
// position of conv1d's im2col with the same stride, pad_left = padding and dilation 1, so
// col2im_add / im2col over the output signal are this op's scatter and its adjoint gather.
template <typename T>
void conv_transpose1d_forward_cpu(const T* x, const T* w, const T* b, T* y, int B, int Cin, int Tin, int Cout, int K,
                                  int stride, int padding) {
  const int64_t Tout =
      conv_transpose1d_checked_output_length("conv_transpose1d", B, Cin, Tin, Cout, K, stride, padding);
  // One pool for these loops and the gemms (see im2col_gemm.h).
#pragma omp parallel for collapse(2) schedule(static) if (static_cast<int64_t>(B) * Cout * Tout >= (1 << 15))
  for (int n = 0; n < B; ++n)
    for (int o = 0; o < Cout; ++o) {
      T* row = y + (static_cast<int64_t>(n) * Cout + o) * Tout;
      const T value = b ? b[o] : T(0);
      for (int64_t t = 0; t < Tout; ++t) row[t] = value;
    }
  const int64_t rows = static_cast<int64_t>(Cout) * K;
  const int64_t tile = tile_columns(rows, Tin);
  std::vector<T> col(static_cast<size_t>(rows * tile));
  for (int n = 0; n < B; ++n) {
    const T* xn = x + static_cast<int64_t>(n) * Cin * Tin;
    T* yn = y + static_cast<int64_t>(n) * Cout * Tout;
    for (int64_t t0 = 0; t0 < Tin; t0 += tile) {
      const int cols = static_cast<int>(std::min<int64_t>(tile, Tin - t0));
      // col [(o, k), cols] = w^T [rows, Cin] x_tile [Cin, cols].
      gemm(true, false, static_cast<int>(rows), cols, Cin, T(1), w, static_cast<int>(rows), xn + t0, Tin, T(0),
           col.data(), cols);
      col2im_add(col.data(), Cout, static_cast<int>(Tout), K, stride, padding, 1, t0, cols, yn);
    }
  }
}

template <typename T>
void conv_transpose1d_backward_cpu(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int B, int Cin, int Tin,
                                   int Cout, int K, int stride, int padding) {
  const int64_t Tout =
      conv_transpose1d_checked_output_length("conv_transpose1d backward", B, Cin, Tin, Cout, K, stride, padding);
  if (db) bias_backward(dy, db, B, Cout, Tout);
  if (!dx && !dw) return;
  const int64_t rows = static_cast<int64_t>(Cout) * K;
  const int64_t tile = tile_columns(rows, Tin);
  std::vector<T> col(static_cast<size_t>(rows * tile));
  for (int n = 0; n < B; ++n) {
    const int64_t x_off = static_cast<int64_t>(n) * Cin * Tin;  // x is only read (and may be null) without dw
    const T* dyn = dy + static_cast<int64_t>(n) * Cout * Tout;
    for (int64_t t0 = 0; t0 < Tin; t0 += tile) {
      const int cols = static_cast<int>(std::min<int64_t>(tile, Tin - t0));
      // dcol [(o, k), cols]: the dy value each (input column, o, k) contributed to.
      im2col(dyn, Cout, static_cast<int>(Tout), K, stride, padding, 1, t0, cols, col.data());
      // dx_tile [Cin, cols] += w [Cin, rows] dcol;  dw [Cin, rows] += x_tile [Cin, cols] dcol^T.
      if (dx)
        gemm(false, false, Cin, cols, static_cast<int>(rows), T(1), w, static_cast<int>(rows), col.data(), cols, T(1),
             dx + x_off + t0, Tin);
      if (dw)
        gemm(false, true, Cin, static_cast<int>(rows), cols, T(1), x + x_off + t0, Tin, col.data(), cols, T(1), dw,
             static_cast<int>(rows));
    }
  }
}

#define VITSCUDA_INSTANTIATE_CONV_TRANSPOSE1D(T)                                                                      \
  template void conv_transpose1d_forward_cpu<T>(const T*, const T*, const T*, T*, int, int, int, int, int, int, int); \
  template void conv_transpose1d_backward_cpu<T>(const T*, const T*, const T*, T*, T*, T*, int, int, int, int, int,   \
                                                 int, int);

VITSCUDA_INSTANTIATE_CONV_TRANSPOSE1D(float)
VITSCUDA_INSTANTIATE_CONV_TRANSPOSE1D(double)
#undef VITSCUDA_INSTANTIATE_CONV_TRANSPOSE1D

}  // namespace vitscuda::kernels
