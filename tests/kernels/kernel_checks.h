// What the kernel tests (one file per kernels/<family>.h) share: random double vectors, float/double
// casts, relative errors, dot products, the accumulation check of backward buffers, and the
// repository's one central-difference gradient (support/gradcheck.h).
//
// Gradient checks use L = sum(y * r) = dot(y, r) with a fixed random r (never a plain sum, which
// gives a zero gradient through softmax and the mean-subtracting norms and hides errors there), in
// double precision, with the step and tolerance of support/gradcheck.h (why 1e-6 holds: see there).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "support/gradcheck.h"

namespace vitscuda::kernels::checks {

using Vec = std::vector<double>;
using testing::numeric_gradient;

constexpr double kGradTolerance = testing::kGradcheckTolerance;

inline Vec random_vector(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, scale);
  Vec v(n);
  for (double& x : v) x = normal(gen);
  return v;
}

template <typename T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

inline Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// max|a - b| / max|b| (max|a - b| when b is all zero).
template <typename A>
double relative_max_error(const std::vector<A>& a, const Vec& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return den > 0.0 ? num / den : num;
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// A gradient buffer pre-filled with random values; added() is what the backward contributed, so
// that the checks also prove the kernels accumulate instead of overwrite.
struct AccumulatedGrad {
  Vec buffer, initial;
  AccumulatedGrad(size_t n, uint32_t seed) : buffer(random_vector(n, seed)), initial(buffer) {}
  double* data() { return buffer.data(); }
  Vec added() const {
    Vec d(buffer.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = buffer[i] - initial[i];
    return d;
  }
};

}  // namespace vitscuda::kernels::checks
