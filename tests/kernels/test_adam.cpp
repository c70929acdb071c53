#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/error.h"
#include "kernels/adam.h"

namespace vitscuda::kernels {
namespace {

template <typename T>
struct AdamBuffers {
  std::vector<T> param, grad, m, v;
};

// Random parameters, gradients and (already warmed-up) moments.
template <typename T>
AdamBuffers<T> random_buffers(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  AdamBuffers<T> b;
  for (int64_t i = 0; i < n; ++i) {
    b.param.push_back(static_cast<T>(normal(gen)));
    b.grad.push_back(static_cast<T>(normal(gen)));
    b.m.push_back(static_cast<T>(0.1 * normal(gen)));
    const double v = 0.01 * normal(gen);
    b.v.push_back(static_cast<T>(v * v));
  }
  return b;
}

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

AdamStepScalars scalars(double lr, int64_t step) {
  AdamStepScalars s;
  s.lr = lr;
  s.step = step;
  return s;
}

// (d) The fused pass with a decay boundary is exactly two separate passes, one per group:
// each element's update depends only on its own values and its group's scalars. Large
// enough for the OpenMP path.
TEST(AdamKernel, BoundaryPassEqualsTwoSeparateGroupPasses) {
  const int64_t n = 200003, boundary = 123457;
  const double wd = 0.05;
  AdamBuffers<float> fused = random_buffers<float>(n, 1);
  AdamBuffers<float> split = fused;
  for (int64_t step = 1; step <= 3; ++step) {
    const AdamStepScalars s = scalars(1e-2 * static_cast<double>(step), step);
    adamw_update_cpu(fused.param.data(), fused.grad.data(), fused.m.data(), fused.v.data(), n, boundary, wd, s);
    adamw_update_cpu(split.param.data(), split.grad.data(), split.m.data(), split.v.data(), boundary,
                     std::vector<AdamRange>{{0, boundary, wd}}, s);
    adamw_update_cpu(split.param.data() + boundary, split.grad.data() + boundary, split.m.data() + boundary,
                     split.v.data() + boundary, n - boundary, std::vector<AdamRange>{{0, n - boundary, 0.0}}, s);
  }
  EXPECT_TRUE(bitwise_equal(fused.param, split.param));
  EXPECT_TRUE(bitwise_equal(fused.m, split.m));
  EXPECT_TRUE(bitwise_equal(fused.v, split.v));
  // The groups really differ: without weight decay the first group would have moved differently.
  AdamBuffers<float> no_decay = random_buffers<float>(n, 1);
  adamw_update_cpu(no_decay.param.data(), no_decay.grad.data(), no_decay.m.data(), no_decay.v.data(), n, 0, wd,
                   scalars(1e-2, 1));
  AdamBuffers<float> one_step = random_buffers<float>(n, 1);
  adamw_update_cpu(one_step.param.data(), one_step.grad.data(), one_step.m.data(), one_step.v.data(), n, boundary,
                   wd, scalars(1e-2, 1));
  EXPECT_NE(no_decay.param[0], one_step.param[0]);
  EXPECT_EQ(no_decay.param[n - 1], one_step.param[n - 1]);
}

TEST(AdamKernel, ElementsOutsideEveryRangeAreUntouched) {
  const int64_t n = 1000;
  const AdamBuffers<float> before = random_buffers<float>(n, 2);
  AdamBuffers<float> b = before;
  const std::vector<AdamRange> ranges = {{10, 200, 0.01}, {200, 300, 0.0}, {700, 1000, 0.01}};
  adamw_update_cpu(b.param.data(), b.grad.data(), b.m.data(), b.v.data(), n, ranges, scalars(1e-3, 1));
  for (int64_t i = 0; i < n; ++i) {
    const bool covered = (i >= 10 && i < 300) || i >= 700;
    if (covered) {
      EXPECT_NE(b.param[i], before.param[i]) << i;
      EXPECT_NE(b.m[i], before.m[i]) << i;
    } else {
      EXPECT_EQ(b.param[i], before.param[i]) << i;
      EXPECT_EQ(b.m[i], before.m[i]) << i;
      EXPECT_EQ(b.v[i], before.v[i]) << i;
    }
  }
}

// The double instantiation against the textbook AdamW formula written independently
// (no fused multiply-adds, other association): only rounding separates them, a few
// ulp of double on quantities of order 1 over three steps.
TEST(AdamKernel, DoubleUpdateMatchesTextbookFormula) {
  const int64_t n = 5000;
  AdamBuffers<double> b = random_buffers<double>(n, 3);
  AdamBuffers<double> ref = b;
  const std::vector<AdamRange> ranges = {{0, 3000, 0.1}, {3000, n, 0.0}};
  const double beta1 = 0.3, beta2 = 0.95, eps = 1e-6;  // beta1 < 0.5: lerp's other branch
  for (int64_t step = 1; step <= 3; ++step) {
    AdamStepScalars s = scalars(0.05, step);
    s.beta1 = beta1;
    s.beta2 = beta2;
    s.eps = eps;
    s.grad_scale = 0.5;
    s.clip_coef = 0.75;
    adamw_update_cpu(b.param.data(), b.grad.data(), b.m.data(), b.v.data(), n, ranges, s);
    for (int64_t i = 0; i < n; ++i) {
      const double wd = i < 3000 ? 0.1 : 0.0;
      const double g = ref.grad[i] * 0.5 * 0.75;
      ref.param[i] -= 0.05 * wd * ref.param[i];
      ref.m[i] = beta1 * ref.m[i] + (1 - beta1) * g;
      ref.v[i] = beta2 * ref.v[i] + (1 - beta2) * g * g;
      const double m_hat = ref.m[i] / (1 - std::pow(beta1, step));
      const double v_hat = ref.v[i] / (1 - std::pow(beta2, step));
      ref.param[i] -= 0.05 * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
  double max_param = 0, max_m = 0, max_v = 0;
  for (int64_t i = 0; i < n; ++i) {
    max_param = std::max(max_param, std::fabs(b.param[i] - ref.param[i]));
    max_m = std::max(max_m, std::fabs(b.m[i] - ref.m[i]));
    max_v = std::max(max_v, std::fabs(b.v[i] - ref.v[i]) / (std::fabs(ref.v[i]) + 1e-300));
  }
  EXPECT_LT(max_param, 1e-13);
  EXPECT_LT(max_m, 1e-14);
  EXPECT_LT(max_v, 1e-14);  // relative: v spans many magnitudes
}

// Loss-scaled gradients with the inverse scale as grad_scale give exactly the unscaled
// update when the scale is a power of two (both products are exact).
TEST(AdamKernel, GradScaleUndoesPowerOfTwoLossScale) {
  const int64_t n = 4096;
  AdamBuffers<float> plain = random_buffers<float>(n, 4);
  AdamBuffers<float> scaled = plain;
  for (float& g : scaled.grad) g *= 65536.0f;
  for (int64_t step = 1; step <= 2; ++step) {
    adamw_update_cpu(plain.param.data(), plain.grad.data(), plain.m.data(), plain.v.data(), n, n / 2, 0.01,
                     scalars(1e-3, step));
    AdamStepScalars s = scalars(1e-3, step);
    s.grad_scale = 1.0 / 65536.0;
    adamw_update_cpu(scaled.param.data(), scaled.grad.data(), scaled.m.data(), scaled.v.data(), n, n / 2, 0.01, s);
  }
  EXPECT_TRUE(bitwise_equal(plain.param, scaled.param));
  EXPECT_TRUE(bitwise_equal(plain.m, scaled.m));
  EXPECT_TRUE(bitwise_equal(plain.v, scaled.v));
}

// Clipping inside the pass rounds g * coef once, exactly like scaling the gradients first.
TEST(AdamKernel, ClipCoefficientInPassEqualsScalingGradientsFirst) {
  const int64_t n = 4096;
  const double coef = 0.3141592653589793;
  AdamBuffers<float> fused = random_buffers<float>(n, 5);
  AdamBuffers<float> separate = fused;
  AdamStepScalars s = scalars(1e-3, 1);
  s.clip_coef = coef;
  adamw_update_cpu(fused.param.data(), fused.grad.data(), fused.m.data(), fused.v.data(), n, n, 0.01, s);
  flat_scale_cpu(separate.grad.data(), n, coef);
  adamw_update_cpu(separate.param.data(), separate.grad.data(), separate.m.data(), separate.v.data(), n, n, 0.01,
                   scalars(1e-3, 1));
  EXPECT_TRUE(bitwise_equal(fused.param, separate.param));
  EXPECT_TRUE(bitwise_equal(fused.m, separate.m));
  EXPECT_TRUE(bitwise_equal(fused.v, separate.v));
  // And the gradient buffer itself is only read by the update.
  const AdamBuffers<float> original = random_buffers<float>(n, 5);
  EXPECT_TRUE(bitwise_equal(fused.grad, original.grad));
}

TEST(AdamKernel, SumSquaresScaleAndZero) {
  const int64_t n = 300001;  // OpenMP path
  std::vector<float> x(n);
  std::mt19937 gen(6);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  long double exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = uniform(gen);
    exact += static_cast<long double>(x[i]) * x[i];
  }
  // Double accumulation of 3e5 non-negative terms: relative error <= n * 2^-53 ~ 3e-11.
  EXPECT_NEAR(flat_sum_squares_cpu(x.data(), n), static_cast<double>(exact), 3e-11 * static_cast<double>(exact));

  std::vector<float> scaled = x;
  flat_scale_cpu(scaled.data(), n, 0.25);
  for (int64_t i = 0; i < n; i += 997) EXPECT_EQ(scaled[i], x[i] * 0.25f);
  flat_zero_cpu(scaled.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(scaled[i], 0.0f);

  std::vector<double> xd = {3.0, 4.0};
  EXPECT_EQ(flat_sum_squares_cpu(xd.data(), 2), 25.0);

  // The same bits whatever the number of threads (1, 2, 3, 7): the gradient norm, and so a clipped
  // update, must not depend on the machine a run is resumed on.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one_thread = flat_sum_squares_cpu(x.data(), n);
  for (int t : {2, 3, 7}) {
    omp_set_num_threads(t);
    const double many = flat_sum_squares_cpu(x.data(), n);
    EXPECT_EQ(std::memcmp(&many, &one_thread, sizeof many), 0) << t << " threads: " << many << " vs " << one_thread;
  }
  omp_set_num_threads(threads);
}

TEST(AdamKernel, RejectsBadRangesAndStep) {
  AdamBuffers<float> b = random_buffers<float>(100, 7);
  auto run = [&](const std::vector<AdamRange>& ranges, int64_t step) {
    adamw_update_cpu(b.param.data(), b.grad.data(), b.m.data(), b.v.data(), 100, ranges, scalars(1e-3, step));
  };
  EXPECT_THROW(run({{0, 101, 0.0}}, 1), Error);                 // past the end
  EXPECT_THROW(run({{50, 60, 0.0}, {55, 70, 0.0}}, 1), Error);  // overlapping
  EXPECT_THROW(run({{60, 70, 0.0}, {0, 10, 0.0}}, 1), Error);   // unsorted
  EXPECT_THROW(run({{0, 10, -0.1}}, 1), Error);                 // negative decay
  EXPECT_THROW(run({{0, 10, 0.0}}, 0), Error);                  // step counts from 1
  EXPECT_THROW(adamw_update_cpu(b.param.data(), b.grad.data(), b.m.data(), b.v.data(), 100, 101, 0.01,
                                scalars(1e-3, 1)),
               Error);
}

}  // namespace
}  // namespace vitscuda::kernels
