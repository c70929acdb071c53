// CUDA training losses (the device counterparts of kernels/cpu/loss.cpp).
//
// The reductions of the masked L1 sum in double: fixed per-thread grid-stride partials, a shared-memory
// tree per block, then one block sums the block partials in a fixed order. The grid depends only on the
// sizes, so the result is deterministic.
#include <algorithm>
#include <cstdint>

#include "common/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/loss.h"

namespace vitscuda::kernels {

namespace {

using cuda::blocks_for;

constexpr int kThreads = 256;
constexpr int kReduceThreads = 256;
constexpr int kMaxReduceBlocks = 1024;

// Block tree sum of two doubles per thread; thread 0 gets the totals in a[0], b[0].
__device__ __forceinline__ void block_sum2(double* a, double* b) {
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
      a[threadIdx.x] += a[threadIdx.x + s];
      b[threadIdx.x] += b[threadIdx.x + s];
    }
    __syncthreads();
  }
}

// partials[block] = sum |x - y| * mask, partials[gridDim + block] = sum mask (in double).
__global__ void masked_l1_partial_kernel(const float* x, const float* y, const float* mask, int64_t C, int64_t F,
                                         int64_t n, int64_t n_mask, double* partials) {
  __shared__ double loss[kReduceThreads];
  __shared__ double weight[kReduceThreads];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  double l = 0.0, w = 0.0;
  for (int64_t i = first; i < n; i += stride) {
    const int64_t mi = (i / (C * F)) * F + i % F;
    l += fabs(static_cast<double>(x[i]) - static_cast<double>(y[i])) * static_cast<double>(mask[mi]);
  }
  for (int64_t i = first; i < n_mask; i += stride) w += static_cast<double>(mask[i]);
  loss[threadIdx.x] = l;
  weight[threadIdx.x] = w;
  __syncthreads();
  block_sum2(loss, weight);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = loss[0];
    partials[gridDim.x + blockIdx.x] = weight[0];
  }
}

// One block: out[0] = sum of partials[0, count), out[1] = sum of partials[count, 2 count).
__global__ void masked_l1_final_kernel(const double* partials, int count, double* out) {
  __shared__ double loss[kReduceThreads];
  __shared__ double weight[kReduceThreads];
  double l = 0.0, w = 0.0;
  for (int i = threadIdx.x; i < count; i += kReduceThreads) {
    l += partials[i];
    w += partials[count + i];
  }
  loss[threadIdx.x] = l;
  weight[threadIdx.x] = w;
  __syncthreads();
  block_sum2(loss, weight);
  if (threadIdx.x == 0) {
    out[0] = loss[0];
    out[1] = weight[0];
  }
}

// One block: *scale = float(double(*grad_loss) / (sum mask * C)), as the CPU forms it.
__global__ void masked_l1_scale_kernel(const float* mask, int64_t n_mask, int64_t C, const float* grad_loss,
                                       float* scale) {
  __shared__ double weight[kReduceThreads];
  double w = 0.0;
  for (int64_t i = threadIdx.x; i < n_mask; i += kReduceThreads) w += static_cast<double>(mask[i]);
  weight[threadIdx.x] = w;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) weight[threadIdx.x] += weight[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    *scale = static_cast<float>(static_cast<double>(*grad_loss) / (weight[0] * static_cast<double>(C)));
}

__global__ void masked_l1_backward_kernel(const float* x, const float* y, const float* mask, const float* scale_ptr,
                                          float* grad_x, float* grad_y, int64_t C, int64_t F, int64_t n) {
  const float scale = *scale_ptr;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float d = __fsub_rn(x[i], y[i]);
    const float sign = d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f);
    const float g = __fmul_rn(__fmul_rn(sign, mask[(i / (C * F)) * F + i % F]), scale);  // (sign * m) * scale
    if (grad_x) grad_x[i] = __fadd_rn(grad_x[i], g);
    if (grad_y) grad_y[i] = __fsub_rn(grad_y[i], g);
  }
}

__global__ void store_loss_kernel(float* loss, double value) { *loss = static_cast<float>(value); }

}  // namespace

void masked_l1_forward_cuda(const float* x, const float* y, const float* mask, int B, int C, int64_t frames,
                            float* loss) {
  VC_CHECK(B >= 1 && C >= 1 && frames >= 1,
           "masked_l1_forward_cuda: invalid sizes B=" << B << " C=" << C << " frames=" << frames);
  const int64_t n = static_cast<int64_t>(B) * C * frames, n_mask = static_cast<int64_t>(B) * frames;
  const unsigned blocks = std::min<unsigned>(blocks_for(n, kReduceThreads), kMaxReduceBlocks);
  cuda::Scratch partials(sizeof(double) * (2 * static_cast<size_t>(blocks) + 2), "masked_l1 partial sums");
  double* out = partials.as<double>() + 2 * static_cast<size_t>(blocks);
  VC_LAUNCH(masked_l1_partial_kernel, blocks, kReduceThreads, 0)
  (x, y, mask, static_cast<int64_t>(C), frames, n, n_mask, partials.as<double>());
  VC_CHECK_LAUNCH("masked_l1_partial_kernel");
  VC_LAUNCH(masked_l1_final_kernel, 1, kReduceThreads, 0)(partials.as<double>(), static_cast<int>(blocks), out);
  VC_CHECK_LAUNCH("masked_l1_final_kernel");
  double host[2] = {0.0, 0.0};
  CUDA_CHECK(cudaMemcpyAsync(host, out, sizeof(host), cudaMemcpyDeviceToHost, cuda::compute_stream()));
  cuda::wait_for_stream();
  const double total = host[0], valid = host[1];
  VC_CHECK(valid > 0.0, "masked_l1_forward_cuda: the mask [" << B << ", " << frames << "] has no valid frame (sum "
                                                             << valid << ")");
  // The division in double on the host; the device rounds it to float once, as the CPU rounds it to T.
  VC_LAUNCH(store_loss_kernel, 1, 1, 0)(loss, total / (valid * C));
  VC_CHECK_LAUNCH("store_loss_kernel");
}

void masked_l1_backward_cuda(const float* x, const float* y, const float* mask, const float* grad_loss,
                             float* grad_x, float* grad_y, int B, int C, int64_t frames) {
  VC_CHECK(B >= 1 && C >= 1 && frames >= 1,
           "masked_l1_backward_cuda: invalid sizes B=" << B << " C=" << C << " frames=" << frames);
  VC_CHECK(grad_loss, "masked_l1_backward_cuda: grad_loss (one float in device memory) is null");
  if (!grad_x && !grad_y) return;
  const int64_t n = static_cast<int64_t>(B) * C * frames, n_mask = static_cast<int64_t>(B) * frames;
  cuda::Scratch scale(sizeof(float), "masked_l1 gradient scale");
  VC_LAUNCH(masked_l1_scale_kernel, 1, kReduceThreads, 0)
  (mask, n_mask, static_cast<int64_t>(C), grad_loss, scale.as<float>());
  VC_CHECK_LAUNCH("masked_l1_scale_kernel");
  VC_LAUNCH(masked_l1_backward_kernel, blocks_for(n, kThreads), kThreads, 0)
  (x, y, mask, scale.as<float>(), grad_x, grad_y, static_cast<int64_t>(C), frames, n);
  VC_CHECK_LAUNCH("masked_l1_backward_kernel");
}

}  // namespace vitscuda::kernels
