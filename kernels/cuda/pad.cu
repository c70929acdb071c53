// Reflect padding of the last dimension (float32): one thread per output element forward, one per
// input element backward (a gather of its own and its mirrored positions: no atomics).
#include "kernels/cuda/common.cuh"
#include "kernels/pad.h"

namespace vitscuda::kernels {

namespace {

constexpr int kThreads = 256;

__global__ void reflect_pad_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t n,
                                           int64_t left, int64_t right) {
  const int64_t out = left + n + right, total = rows * out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / out, j = i % out;
    y[i] = x[r * n + reflect_source(j, n, left)];
  }
}

__global__ void reflect_pad_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, int64_t rows,
                                            int64_t n, int64_t left, int64_t right) {
  const int64_t out = left + n + right, total = rows * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / n, i = e % n;
    const float* dyr = dy + r * out;
    float g = dyr[left + i];
    if (i >= 1 && i <= left) g += dyr[left - i];
    if (i <= n - 2 && i >= n - 1 - right) g += dyr[left + 2 * (n - 1) - i];
    dx[e] += g;
  }
}

}  // namespace

void reflect_pad_forward_cuda(const float* x, float* y, int64_t rows, int64_t n, int64_t left, int64_t right) {
  const int64_t total = rows * (left + n + right);
  if (total <= 0) return;
  VC_LAUNCH(reflect_pad_forward_kernel, cuda::blocks_for(total, kThreads), kThreads, 0)(x, y, rows, n, left, right);
  VC_CHECK_LAUNCH("reflect_pad_forward");
}

void reflect_pad_backward_cuda(const float* dy, float* dx, int64_t rows, int64_t n, int64_t left, int64_t right) {
  const int64_t total = rows * n;
  if (total <= 0) return;
  VC_LAUNCH(reflect_pad_backward_kernel, cuda::blocks_for(total, kThreads), kThreads, 0)(dy, dx, rows, n, left, right);
  VC_CHECK_LAUNCH("reflect_pad_backward");
}

}  // namespace vitscuda::kernels
