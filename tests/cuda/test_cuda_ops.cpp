// CUDA against the CPU where the op case list (tests/support/op_cases.h, run on the device by
// test_cuda_op_cases.cpp) does not reach: tensors, the allocator, the random streams, an operand
// error on the device and the spline's per-element accuracy and tails. Every test skips itself
// (with the reason) when no CUDA device is usable, and runs in full when one is.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/device.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::max_abs_diff;
using vitscuda::testing::relative_l2;
using vitscuda::testing::uniform_tensor;

namespace {

Tensor cuda(const Tensor& t) { return t.defined() ? t.to(Device::CUDA) : Tensor(); }

// max |a - b| / (abs + rel * |b|) over elements: <= 1 passes.
double pointwise_ratio(const Tensor& gpu, const Tensor& cpu, double abs_tol, double rel_tol) {
  const std::vector<float> a = gpu.to_float_vector(), b = cpu.to_float_vector();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (std::isnan(b[i])) continue;
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / (abs_tol + rel_tol * std::fabs(double(b[i]))));
  }
  return worst;
}

TEST(CudaTensor, RoundTripZerosFillCloneAndDeviceErrors) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor h = uniform_tensor({3, 5, 7}, 1);
  const Tensor d = h.to(Device::CUDA);
  EXPECT_EQ(d.device(), Device::CUDA);
  EXPECT_EQ(max_abs_diff(d.to(Device::CPU), h), 0.0);
  Tensor c = d.clone();
  EXPECT_NE(c.raw(), d.raw());
  EXPECT_EQ(max_abs_diff(c, h), 0.0);
  Tensor z = Tensor::zeros({1000}, DType::F32, Device::CUDA);
  for (float v : z.to_float_vector()) ASSERT_EQ(v, 0.0f);
  z.fill(2.5);
  for (float v : z.to_float_vector()) ASSERT_EQ(v, 2.5f);
  // Mixed devices are an error naming both operands, never an implicit copy.
  try {
    ops::add(d, h);
    FAIL() << "adding a CUDA and a CPU tensor did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different devices"), std::string::npos) << e.what();
  }
  // Double precision stays on the CPU.
  EXPECT_THROW(Tensor::empty({4}, DType::F64, Device::CUDA).fill(1.0), Error);
}

TEST(CudaAllocator, TracksLiveAndPeakReusesBlocksAndEnforcesTheBudget) {
  VITSCUDA_REQUIRE_CUDA();
  DeviceAllocator& alloc = DeviceAllocator::instance();
  kernels::device_synchronize();
  alloc.empty_cache();
  alloc.reset_peak();
  const DeviceMemoryStats before = alloc.stats();
  {
    Tensor a = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);  // 4 MiB
    const DeviceMemoryStats during = alloc.stats();
    EXPECT_GE(during.live_bytes, before.live_bytes + (size_t(4) << 20));
    EXPECT_GE(during.peak_live_bytes, during.live_bytes);
  }
  const DeviceMemoryStats after_free = alloc.stats();
  EXPECT_EQ(after_free.live_bytes, before.live_bytes);
  EXPECT_GE(after_free.peak_live_bytes, before.live_bytes + (size_t(4) << 20));
  {
    Tensor again = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);  // served from the cache
    EXPECT_EQ(alloc.stats().cuda_mallocs, after_free.cuda_mallocs);
  }
  // A budget below what is asked: a clear error naming the budget, and nothing leaked.
  const size_t old_budget = alloc.budget();
  alloc.set_budget(alloc.stats().reserved_bytes + (size_t(8) << 20));
  try {
    Tensor too_big = Tensor::empty({int64_t(64) << 20}, DType::F32, Device::CUDA);  // 256 MiB
    FAIL() << "allocation over the budget did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("budget"), std::string::npos) << msg;
    EXPECT_NE(msg.find("peak"), std::string::npos) << msg;
  }
  alloc.set_budget(old_budget);
  EXPECT_EQ(alloc.stats().live_bytes, before.live_bytes);
}

TEST(CudaRandom, NormalAndUniformDrawsEqualTheCpuStream) {
  VITSCUDA_REQUIRE_CUDA();
  for (uint64_t offset : {uint64_t(0), uint64_t(12345)}) {
    Rng cpu_rng(7), gpu_rng(7);
    cpu_rng.set_offset(offset);
    gpu_rng.set_offset(offset);
    Tensor h = Tensor::empty({4, 192, 301});
    Tensor d = Tensor::empty({4, 192, 301}, DType::F32, Device::CUDA);
    cpu_rng.fill_normal(h);
    gpu_rng.fill_normal(d);
    EXPECT_EQ(cpu_rng.offset(), gpu_rng.offset());
    // Double-precision Box-Muller on both sides, rounded to float: at most one float ulp apart.
    EXPECT_LE(pointwise_ratio(d, h, 0.0, 1.2e-7), 1.0) << "normal draws, offset " << offset;
    cpu_rng.fill_uniform(h, -2.0, 3.0);
    gpu_rng.fill_uniform(d, -2.0, 3.0);
    // Uniform draws round lo + (hi - lo) * u the same way on both sides (kernels/philox.h): equal.
    EXPECT_EQ(max_abs_diff(d, h), 0.0) << "uniform draws, offset " << offset;
  }
}

// An id outside the table is an error on the device too (the gather itself is a case of
// tests/support/op_cases.cpp).
TEST(CudaNn, EmbeddingRejectsAnIdOutsideTheTable) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor table = uniform_tensor({178, 192}, 18);
  EXPECT_THROW(ops::embedding(cuda(table), std::vector<int32_t>{0, 178}, 1, 2), Error);
}

TEST(CudaSpline, RationalQuadraticSplineBothDirectionsAndTails) {
  VITSCUDA_REQUIRE_CUDA();
  const int64_t n = 3000;
  const int bins = 10;
  const double bound = 5.0;
  const Tensor x = uniform_tensor({n}, 37, -6.0, 6.0);  // about a sixth falls in the linear tails
  const Tensor w = uniform_tensor({n, bins}, 38, -2.0, 2.0), h = uniform_tensor({n, bins}, 39, -2.0, 2.0),
               d = uniform_tensor({n, bins - 1}, 40, -2.0, 2.0);
  for (bool reverse : {false, true}) {
    auto [y_ref, ld_ref] = ops::rational_quadratic_spline(x, w, h, d, reverse, bound);
    auto [y, ld] = ops::rational_quadratic_spline(cuda(x), cuda(w), cuda(h), cuda(d), reverse, bound);
    // The two sides differ only by libm ulps (expf, logf, log1pf within 2 ulp on the GPU); the output's
    // error is that amplified by the local slope e^lad, and log|det|'s by f''/f', which for these
    // O(1) random parameters stays below ~1e-3 (measured 8.6e-4 with a simulated 1-ulp libm change).
    const std::vector<float> yg = y.to_float_vector(), yc = y_ref.to_float_vector();
    const std::vector<float> lg = ld.to_float_vector(), lc = ld_ref.to_float_vector();
    int64_t bad_y = 0, bad_ld = 0, tails = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::fabs(yg[i] - yc[i]) > 1e-5 * (1.0 + std::exp(double(lc[i])))) ++bad_y;
      if (std::fabs(lg[i] - lc[i]) > 2e-3) ++bad_ld;
      if (std::fabs(x.data<float>()[i]) > bound) {
        ++tails;
        EXPECT_EQ(yg[i], x.data<float>()[i]) << "tail element " << i << " must pass through";
        EXPECT_EQ(lg[i], 0.0f) << "tail element " << i << " has log|det| 0";
      }
    }
    EXPECT_GT(tails, 0);
    EXPECT_EQ(bad_y, 0) << (reverse ? "reverse" : "forward") << " outputs";
    EXPECT_EQ(bad_ld, 0) << (reverse ? "reverse" : "forward") << " log|det|";
  }
}

}  // namespace
