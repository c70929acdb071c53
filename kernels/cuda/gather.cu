// Row and frame gathers: the embedding lookup and the alignment expansion. Index arrays
// come from the host; they are checked there and uploaded.
#include "kernels/alignment.h"
#include "kernels/cuda/common.cuh"
#include "kernels/embedding.h"

namespace vitscuda::kernels {

namespace {

__global__ void embedding_kernel(const float* __restrict__ table, const int32_t* __restrict__ ids,
                                 float* __restrict__ y, int64_t n, int64_t C) {
  const int64_t total = n * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = table[int64_t(ids[i / C]) * C + i % C];
}

__global__ void gather_frames_kernel(const float* __restrict__ x, const int32_t* __restrict__ index,
                                     float* __restrict__ y, int64_t C, int64_t T_in, int64_t F, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t f = i % F;
    const int64_t bc = i / F;  // b * C + c
    const int64_t b = bc / C;
    const int32_t t = index[b * F + f];
    y[i] = t < 0 ? 0.0f : x[bc * T_in + t];
  }
}

}  // namespace

void embedding_forward_cuda(const float* table, const int32_t* ids, float* y, int64_t n, int64_t vocab, int64_t C) {
  if (n <= 0 || C <= 0) return;
  for (int64_t i = 0; i < n; ++i)
    VC_CHECK(ids[i] >= 0 && ids[i] < vocab,
             "embedding: id " << ids[i] << " at position " << i << " is outside the table (valid ids: 0.."
                              << vocab - 1 << ")");
  cuda::Scratch dev_ids = cuda::upload(ids, sizeof(int32_t) * size_t(n), "embedding ids");
  VC_LAUNCH(embedding_kernel, cuda::blocks_for(n * C, 256), 256, 0)(table, dev_ids.as<int32_t>(), y, n, C);
  VC_CHECK_LAUNCH("embedding");
}

void gather_frames_cuda(const float* x, const int32_t* index, float* y, int64_t B, int64_t C, int64_t T_in, int64_t F) {
  const int64_t total = B * C * F;
  if (total <= 0) return;
  check_frame_index("gather_frames", index, B * F, T_in);
  cuda::Scratch dev_index = cuda::upload(index, sizeof(int32_t) * size_t(B * F), "alignment index");
  VC_LAUNCH(gather_frames_kernel, cuda::blocks_for(total, 256), 256, 0)(x, dev_index.as<int32_t>(), y, C, T_in, F,
                                                                         total);
  VC_CHECK_LAUNCH("gather_frames");
}

}  // namespace vitscuda::kernels
