#include "kernels/pad.h"

namespace vitscuda::kernels {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

template <typename T>
void reflect_pad_forward_cpu(const T* x, T* y, int64_t rows, int64_t n, int64_t left, int64_t right) {
  const int64_t out = left + n + right;
#pragma omp parallel for if (rows * out > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * out;
    for (int64_t j = 0; j < out; ++j) yr[j] = xr[reflect_source(j, n, left)];
  }
}

template <typename T>
void reflect_pad_backward_cpu(const T* dy, T* dx, int64_t rows, int64_t n, int64_t left, int64_t right) {
  const int64_t out = left + n + right;
#pragma omp parallel for if (rows * out > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * out;
    T* dxr = dx + r * n;
    for (int64_t i = 0; i < n; ++i) {
      T g = dyr[left + i];
      if (i >= 1 && i <= left) g += dyr[left - i];                             // mirrored on the left
      if (i <= n - 2 && i >= n - 1 - right) g += dyr[left + 2 * (n - 1) - i];  // mirrored on the right
      dxr[i] += g;
    }
  }
}

#define VC_INSTANTIATE(T)                                                                          \
  template void reflect_pad_forward_cpu<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t);      \
  template void reflect_pad_backward_cpu<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t);
VC_INSTANTIATE(float)
VC_INSTANTIATE(double)
#undef VC_INSTANTIATE

}  // namespace vitscuda::kernels
