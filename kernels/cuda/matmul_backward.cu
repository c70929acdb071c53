// Backward of the dense products on cuBLAS, accumulating (beta = 1). As in matmul.cu, a
// row-major [M, N] matrix is a column-major [N, M] one, so each row-major product
// C = op(A) op(B) is issued as the column-major C^T = op(B)^T op(A)^T. fp32 math (the handle
// has the default, non-TF32 math mode). The bias gradient is a deterministic reduction.
#include <cstdint>

#include "kernels/cuda/bias_grad.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/matmul.h"

namespace vitscuda::kernels {

namespace {
void check_sizes(const char* who, int a, int b, int c, int d) {
  VC_CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0,
           who << ": negative size in (" << a << ", " << b << ", " << c << ", " << d << ")");
}
}  // namespace

void matmul_backward_cuda(const float* a, const float* b, const float* dc, float* da, float* db, int batch, int M,
                          int K, int N) {
  check_sizes("matmul backward", batch, M, K, N);
  // An empty dimension leaves nothing to add (cuBLAS would reject its leading dimension of 0).
  if (batch == 0 || M == 0 || K == 0 || N == 0 || (!da && !db)) return;
  VC_CHECK(!da || b, "matmul backward: da is wanted but b is null");
  VC_CHECK(!db || a, "matmul backward: db is wanted but a is null");
  VC_CHECK(dc, "matmul backward: the output gradient dc is null");
  const float one = 1.0f;
  const int64_t sa = int64_t(M) * K, sb = int64_t(K) * N, sc = int64_t(M) * N;
  // da [M, K] += dc [M, N] b^T   ->   column-major da^T [K, M] += b^T-stored (op T) dc^T-stored (op N).
  if (da)
    CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, K, M, N, &one, b, N, sb,
                                           dc, N, sc, &one, da, K, sa, batch));
  // db [K, N] += a^T dc   ->   column-major db^T [N, K] += dc^T-stored (op N) a^T-stored (op T).
  if (db)
    CUBLAS_CHECK(cublasSgemmStridedBatched(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_T, N, K, M, &one, dc, N, sc,
                                           a, K, sa, &one, db, N, sb, batch));
}

void linear_backward_cuda(const float* x, const float* w, const float* dy, float* dx, float* dw, float* dbias,
                          int rows, int in, int out) {
  check_sizes("linear backward", rows, in, out, 0);
  if (rows == 0 || out == 0 || (!dx && !dw && !dbias)) return;  // every gradient is a sum over empty rows or outs
  VC_CHECK(dy, "linear backward: the output gradient dy is null");
  const float one = 1.0f;
  if (in > 0) {  // with in == 0, dx and dw are empty
    VC_CHECK(!dx || w, "linear backward: dx is wanted but the weight is null");
    VC_CHECK(!dw || x, "linear backward: dw is wanted but the input x is null");
    // dx [rows, in] += dy [rows, out] w [out, in]   ->   dx^T [in, rows] += w^T-stored (op N) dy^T-stored (op N).
    if (dx)
      CUBLAS_CHECK(cublasSgemm(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, in, rows, out, &one, w, in, dy, out,
                               &one, dx, in));
    // dw [out, in] += dy^T x   ->   dw^T [in, out] += x^T-stored (op N) dy^T-stored (op T).
    if (dw)
      CUBLAS_CHECK(cublasSgemm(cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_T, in, out, rows, &one, x, in, dy, out,
                               &one, dw, in));
  }
  if (dbias) cuda::bias_grad_rows(dy, dbias, rows, out);
}

}  // namespace vitscuda::kernels
