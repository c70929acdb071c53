#include "kernels/alignment.h"

#include "common/error.h"

namespace vitscuda::kernels {

void check_frame_index(const char* op, const int32_t* index, int64_t count, int64_t T_in) {
  for (int64_t i = 0; i < count; ++i)
    VC_CHECK(index[i] >= -1 && index[i] < T_in,
             op << ": index " << index[i] << " at " << i << " outside [-1, " << T_in << ")");
}

template <typename T>
void gather_frames_cpu(const T* x, const int32_t* index, T* y, int64_t B, int64_t C, int64_t T_in, int64_t F) {
  if (B * C * F <= 0) return;
  check_frame_index("gather_frames", index, B * F, T_in);
#pragma omp parallel for collapse(2) if (B * C * F > 65536)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const T* xr = x + (b * C + c) * T_in;
      T* yr = y + (b * C + c) * F;
      const int32_t* ir = index + b * F;
      for (int64_t f = 0; f < F; ++f) yr[f] = ir[f] < 0 ? T(0) : xr[ir[f]];
    }
}

template <typename T>
void gather_frames_backward_cpu(const T* dy, const int32_t* index, T* dx, int64_t B, int64_t C, int64_t T_in,
                                int64_t F) {
  check_frame_index("gather_frames backward", index, B * F, T_in);
  // Each (b, c) row is owned by one thread, so the scatter needs no atomics.
#pragma omp parallel for collapse(2) if (B * C * F > 65536)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      T* xr = dx + (b * C + c) * T_in;
      const T* yr = dy + (b * C + c) * F;
      const int32_t* ir = index + b * F;
      for (int64_t f = 0; f < F; ++f)
        if (ir[f] >= 0) xr[ir[f]] += yr[f];
    }
}

template void gather_frames_cpu<float>(const float*, const int32_t*, float*, int64_t, int64_t, int64_t, int64_t);
template void gather_frames_cpu<double>(const double*, const int32_t*, double*, int64_t, int64_t, int64_t, int64_t);
template void gather_frames_backward_cpu<float>(const float*, const int32_t*, float*, int64_t, int64_t, int64_t,
                                                int64_t);
template void gather_frames_backward_cpu<double>(const double*, const int32_t*, double*, int64_t, int64_t, int64_t,
                                                 int64_t);

}  // namespace vitscuda::kernels
