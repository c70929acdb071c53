#include "kernels/loss.h"

#include <cmath>

#include "common/error.h"

namespace vitscuda::kernels {

namespace {

constexpr int64_t kParallelWork = 32768;  // below this many elements a loop stays serial

template <typename T>
double mask_sum(const T* mask, int B, int64_t frames) {
  double total = 0.0;
  for (int64_t i = 0; i < static_cast<int64_t>(B) * frames; ++i) total += static_cast<double>(mask[i]);
  return total;
}

}  // namespace

template <typename T>
void masked_l1_forward_cpu(const T* x, const T* y, const T* mask, int B, int C, int64_t frames, T* loss) {
  VC_CHECK(B >= 1 && C >= 1 && frames >= 1,
           "masked_l1_forward: invalid sizes B=" << B << " C=" << C << " frames=" << frames);
  const double valid = mask_sum(mask, B, frames);
  VC_CHECK(valid > 0.0, "masked_l1_forward: the mask [" << B << ", " << frames << "] has no valid frame (sum "
                                                        << valid << ")");
  double total = 0.0;
  const int64_t rows = static_cast<int64_t>(B) * C;
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows * frames > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * frames;
    const T* yr = y + r * frames;
    const T* mr = mask + (r / C) * frames;
    double row = 0.0;
    for (int64_t t = 0; t < frames; ++t)
      row += std::abs(static_cast<double>(xr[t]) - static_cast<double>(yr[t])) * static_cast<double>(mr[t]);
    total += row;
  }
  *loss = static_cast<T>(total / (valid * C));
}

template <typename T>
void masked_l1_backward_cpu(const T* x, const T* y, const T* mask, const T* grad_loss, T* grad_x, T* grad_y, int B,
                            int C, int64_t frames) {
  VC_CHECK(B >= 1 && C >= 1 && frames >= 1,
           "masked_l1_backward: invalid sizes B=" << B << " C=" << C << " frames=" << frames);
  const double valid = mask_sum(mask, B, frames);
  VC_CHECK(valid > 0.0, "masked_l1_backward: the mask [" << B << ", " << frames << "] has no valid frame (sum "
                                                         << valid << ")");
  const T scale = static_cast<T>(static_cast<double>(*grad_loss) / (valid * C));
  const int64_t rows = static_cast<int64_t>(B) * C;
#pragma omp parallel for schedule(static) if (rows * frames > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const T* mr = mask + (r / C) * frames;
    for (int64_t t = 0; t < frames; ++t) {
      const int64_t i = r * frames + t;
      const T d = x[i] - y[i];
      const T sign = d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));
      const T g = sign * mr[t] * scale;
      if (grad_x) grad_x[i] += g;
      if (grad_y) grad_y[i] -= g;
    }
  }
}

#define VITSCUDA_INSTANTIATE_LOSS(T)                                                                                \
  template void masked_l1_forward_cpu<T>(const T*, const T*, const T*, int, int, int64_t, T*);                      \
  template void masked_l1_backward_cpu<T>(const T*, const T*, const T*, const T*, T*, T*, int, int, int64_t);

VITSCUDA_INSTANTIATE_LOSS(float)
VITSCUDA_INSTANTIATE_LOSS(double)

#undef VITSCUDA_INSTANTIATE_LOSS

}  // namespace vitscuda::kernels
