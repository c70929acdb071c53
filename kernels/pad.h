// Padding of the last dimension: reflect padding (torch.nn.functional.pad(mode="reflect")), the period
// discriminators' fold of a waveform to a multiple of the period. Rows of length n become rows of length
// left + n + right; padded samples mirror the row around its first and last sample (the edge itself is
// not repeated), so left and right must be < n. Float and double on the CPU, float on CUDA.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define VC_PAD_HOST_DEVICE __host__ __device__
#else
#define VC_PAD_HOST_DEVICE
#endif

namespace vitscuda::kernels {

// The input position an output position j of a reflect-padded row reads (0 <= j < left + n + right).
VC_PAD_HOST_DEVICE inline int64_t reflect_source(int64_t j, int64_t n, int64_t left) {
  const int64_t k = j - left;
  if (k < 0) return -k;
  if (k >= n) return 2 * (n - 1) - k;
  return k;
}

// y [rows, left + n + right] = reflect_pad(x [rows, n]).
template <typename T>
void reflect_pad_forward_cpu(const T* x, T* y, int64_t rows, int64_t n, int64_t left, int64_t right);
// dx [rows, n] += the sum of dy over the output positions that read each input position (its own and
// the mirrored ones): one gather per input element, so no atomics and a fixed summation order.
template <typename T>
void reflect_pad_backward_cpu(const T* dy, T* dx, int64_t rows, int64_t n, int64_t left, int64_t right);

// CUDA (float32, device pointers, ordered on the compute stream): same arguments as the CPU kernels.
void reflect_pad_forward_cuda(const float* x, float* y, int64_t rows, int64_t n, int64_t left, int64_t right);
void reflect_pad_backward_cuda(const float* dy, float* dx, int64_t rows, int64_t n, int64_t left, int64_t right);

}  // namespace vitscuda::kernels
