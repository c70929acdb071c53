// Kernel tests of matmul and linear (kernels/matmul.h): forwards against naive loops, backwards
// against central differences (kernel_checks.h; both ops are linear in each input, so only rounding).
#include <gtest/gtest.h>

#include "kernel_checks.h"
#include "kernels/matmul.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

// ------------------------------------------------------------------ matmul / linear

TEST(MatmulKernel, ForwardMatchesNaiveLoop) {
  struct Case {
    int batch, M, K, N;
  };
  for (const Case c : {Case{3, 4, 5, 2}, Case{1, 1, 7, 1}, Case{2, 33, 17, 65}, Case{4, 8, 0, 3}}) {
    const Vec a = random_vector(static_cast<size_t>(c.batch) * c.M * c.K, 11);
    const Vec b = random_vector(static_cast<size_t>(c.batch) * c.K * c.N, 12);
    Vec ref(static_cast<size_t>(c.batch) * c.M * c.N, 0.0);
    for (int i = 0; i < c.batch; ++i)
      for (int m = 0; m < c.M; ++m)
        for (int n = 0; n < c.N; ++n)
          for (int k = 0; k < c.K; ++k)
            ref[(static_cast<size_t>(i) * c.M + m) * c.N + n] +=
                a[(static_cast<size_t>(i) * c.M + m) * c.K + k] * b[(static_cast<size_t>(i) * c.K + k) * c.N + n];
    Vec out(ref.size(), -7.0);
    matmul_forward_cpu<double>(a.data(), b.data(), out.data(), c.batch, c.M, c.K, c.N);
    // An empty inner dimension gives exact zeros (the -7 fill must be gone).
    if (c.K == 0)
      for (double v : out) EXPECT_EQ(v, 0.0);
    else
      EXPECT_LT(relative_max_error(out, ref), 1e-13);
    std::vector<float> a32 = cast<float>(a), b32 = cast<float>(b), out32(ref.size());
    matmul_forward_cpu<float>(a32.data(), b32.data(), out32.data(), c.batch, c.M, c.K, c.N);
    if (c.K > 0) EXPECT_LT(relative_max_error(to_double(out32), ref), 1e-5);  // float rounding of inputs and sums
  }
}

TEST(MatmulKernel, BackwardMatchesFiniteDifferences) {
  const int batch = 3, M = 4, K = 5, N = 2;
  Vec a = random_vector(batch * M * K, 21), b = random_vector(batch * K * N, 22);
  const Vec r = random_vector(batch * M * N, 23);
  auto loss = [&] {
    Vec c(batch * M * N);
    matmul_forward_cpu<double>(a.data(), b.data(), c.data(), batch, M, K, N);
    return dot(c, r);
  };
  AccumulatedGrad da(a.size(), 24), db(b.size(), 25);
  matmul_backward_cpu<double>(a.data(), b.data(), r.data(), da.data(), db.data(), batch, M, K, N);
  EXPECT_LT(relative_max_error(da.added(), numeric_gradient(&a, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&b, loss)), kGradTolerance);
}

TEST(LinearKernel, ForwardMatchesNaiveLoop) {
  const int rows = 7, in = 6, out = 5;
  const Vec x = random_vector(rows * in, 31), w = random_vector(out * in, 32), b = random_vector(out, 33);
  for (const bool with_bias : {true, false}) {
    Vec ref(rows * out);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double acc = with_bias ? b[o] : 0.0;
        for (int i = 0; i < in; ++i) acc += x[r * in + i] * w[o * in + i];
        ref[r * out + o] = acc;
      }
    Vec y(rows * out, -7.0);
    linear_forward_cpu<double>(x.data(), w.data(), with_bias ? b.data() : nullptr, y.data(), rows, in, out);
    EXPECT_LT(relative_max_error(y, ref), 1e-14) << "bias " << with_bias;
  }
}

TEST(LinearKernel, BackwardMatchesFiniteDifferences) {
  const int rows = 6, in = 5, out = 3;
  Vec x = random_vector(rows * in, 41), w = random_vector(out * in, 42), b = random_vector(out, 43);
  const Vec r = random_vector(rows * out, 44);
  auto loss = [&] {
    Vec y(rows * out);
    linear_forward_cpu<double>(x.data(), w.data(), b.data(), y.data(), rows, in, out);
    return dot(y, r);
  };
  AccumulatedGrad dx(x.size(), 45), dw(w.size(), 46), db(b.size(), 47);
  linear_backward_cpu<double>(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), rows, in, out);
  EXPECT_LT(relative_max_error(dx.added(), numeric_gradient(&x, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(dw.added(), numeric_gradient(&w, loss)), kGradTolerance);
  EXPECT_LT(relative_max_error(db.added(), numeric_gradient(&b, loss)), kGradTolerance);
}

}  // namespace
}  // namespace vitscuda::kernels
