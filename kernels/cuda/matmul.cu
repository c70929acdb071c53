// Dense products on cuBLAS (column-major): a row-major [M, N] matrix is a column-major
// [N, M] one, so row-major C = A B is column-major C^T = B^T A^T with no transposes.
#include "kernels/cuda/common.cuh"
#include "kernels/matmul.h"

namespace vitscuda::kernels {

namespace {

__global__ void add_bias_rows_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t rows, int out) {
  const int64_t n = rows * out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % out];
}

}  // namespace

void matmul_forward_cuda(const float* a, const float* b, float* c, int batch, int M, int K, int N) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  const float one = 1.0f, zero = 0.0f;
  if (K == 0) {
    CUDA_CHECK(cudaMemsetAsync(c, 0, sizeof(float) * size_t(batch) * M * N, cuda::compute_stream()));
    return;
  }
  CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, b, N,
                                         int64_t(K) * N, a, K, int64_t(M) * K, &zero, c, N, int64_t(M) * N, batch));
}

void linear_forward_cuda(const float* x, const float* w, const float* bias, float* y, int rows, int in, int out) {
  if (rows <= 0 || out <= 0) return;
  const float one = 1.0f, zero = 0.0f;
  if (in == 0) {
    CUDA_CHECK(cudaMemsetAsync(y, 0, sizeof(float) * size_t(rows) * out, cuda::compute_stream()));
  } else {
    // y^T [out, rows] = (w^T)^T x^T, where w^T [in, out] and x^T [in, rows] are the column-major views.
    CUBLAS_CHECK(cublasSgemm(cuda::cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &one, w, in, x, in, &zero,
                             y, out));
  }
  if (bias) {
    const int64_t n = int64_t(rows) * out;
    VC_LAUNCH(add_bias_rows_kernel, cuda::blocks_for(n, 256), 256, 0)(y, bias, rows, out);
    VC_CHECK_LAUNCH("linear bias");
  }
}

}  // namespace vitscuda::kernels
