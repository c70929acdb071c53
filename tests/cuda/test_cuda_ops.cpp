// CUDA against the CPU reference, op by op, at the shapes VITS uses. Every test skips itself
// (with the reason) when no CUDA device is usable, and runs in full when one is.
//
// Tolerances, by what differs between the two sides:
// - exact (0): copies, gathers, layout ops and IEEE-correctly-rounded +, -, *, / (same order);
// - kPointwise (abs 2e-6 + rel 2e-6): libm functions; CUDA's expf/tanhf/erff/log1pf are within 2 ulp
//   and glibc's within 1, so the two differ by at most a few ulp (~4e-7 relative) - 2e-6 leaves margin;
// - kReduction (relative L2 2e-5): sums of K products in another order (cuBLAS, cuDNN): the float error
//   grows like sqrt(K) * 6e-8 ~ 1e-6 for K ~ 2800 (256 channels x 11 taps); 2e-5 catches any wrong
//   index, padding or offset, which shows as O(1) relative error.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv1d.h"
#include "kernels/device.h"
#include "kernels/error.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::max_abs_diff;
using vitscuda::testing::relative_l2;
using vitscuda::testing::uniform_tensor;

namespace {

constexpr double kPointwiseAbs = 2e-6, kPointwiseRel = 2e-6;
constexpr double kReduction = 2e-5;
// cuDNN may choose an FFT or Winograd algorithm, whose fp32 error reaches ~1e-5 relative: 1e-4 still
// catches any wrong padding, dilation or channel mapping (O(1) errors).
constexpr double kCudnn = 1e-4;

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

void expect_pointwise(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  ASSERT_EQ(gpu.device(), Device::CUDA) << what;
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what;
  EXPECT_LE(pointwise_ratio(gpu, cpu, kPointwiseAbs, kPointwiseRel), 1.0)
      << what << ": max |diff| " << max_abs_diff(gpu, cpu);
}

void expect_exact(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  ASSERT_EQ(gpu.device(), Device::CUDA) << what;
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what;
  EXPECT_EQ(max_abs_diff(gpu, cpu), 0.0) << what;
}

void expect_close(const Tensor& gpu, const Tensor& cpu, const std::string& what, double tol = kReduction) {
  ASSERT_EQ(gpu.device(), Device::CUDA) << what;
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what;
  const double err = relative_l2(gpu, cpu);
  EXPECT_LT(err, tol) << what << ": relative L2 " << err << ", max |diff| " << max_abs_diff(gpu, cpu);
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
    EXPECT_LE(pointwise_ratio(d, h, 0.0, 1.2e-7), 1.0) << "uniform draws, offset " << offset;
  }
}

TEST(CudaElementwise, UnaryOpsMatchTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor x = uniform_tensor({4, 192, 333}, 2, -4.0, 4.0);
  const Tensor pos = uniform_tensor({4, 192, 333}, 3, 1e-3, 30.0);
  const Tensor dx = cuda(x), dpos = cuda(pos);
  expect_pointwise(ops::relu(dx), ops::relu(x), "relu");
  expect_pointwise(ops::leaky_relu(dx, 0.1), ops::leaky_relu(x, 0.1), "leaky_relu");
  expect_pointwise(ops::gelu(dx), ops::gelu(x), "gelu");
  expect_pointwise(ops::activation(dx, "gelu_new"), ops::activation(x, "gelu_new"), "gelu_new");
  expect_pointwise(ops::activation(dx, "silu"), ops::activation(x, "silu"), "silu");
  expect_pointwise(ops::tanh(dx), ops::tanh(x), "tanh");
  expect_pointwise(ops::sigmoid(dx), ops::sigmoid(x), "sigmoid");
  expect_pointwise(ops::exp(dx), ops::exp(x), "exp");
  expect_pointwise(ops::log(dpos), ops::log(pos), "log");
  expect_pointwise(ops::softplus(ops::scale(dx, 8.0)), ops::softplus(ops::scale(x, 8.0)), "softplus (both branches)");
  expect_pointwise(ops::ceil(dx), ops::ceil(x), "ceil");
  expect_pointwise(ops::clamp_min(dx, 0.25), ops::clamp_min(x, 0.25), "clamp_min");
  expect_exact(ops::scale(dx, 0.37), ops::scale(x, 0.37), "scale");
  expect_exact(ops::add_scalar(dx, -1.5), ops::add_scalar(x, -1.5), "add_scalar");
}

TEST(CudaElementwise, BroadcastingBinaryOpsAreExact) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor a = uniform_tensor({4, 192, 333}, 4);
  const Tensor b_full = uniform_tensor({4, 192, 333}, 5, 0.5, 2.0);
  const Tensor mask = uniform_tensor({4, 1, 333}, 6, 0.5, 2.0);
  const Tensor bias = uniform_tensor({192, 1}, 7, 0.5, 2.0);
  const Tensor scalar = Tensor::full({1}, 3.0);
  const Tensor row = uniform_tensor({1, 1, 333}, 8, 0.5, 2.0);
  for (const Tensor* b : {&b_full, &mask, &bias, &scalar, &row}) {
    const std::string shape = shape_str(b->shape());
    const Tensor da = cuda(a), db = cuda(*b);
    expect_exact(ops::add(da, db), ops::add(a, *b), "add " + shape);
    expect_exact(ops::sub(db, da), ops::sub(*b, a), "sub (broadcast on the left) " + shape);
    expect_exact(ops::mul(da, db), ops::mul(a, *b), "mul " + shape);
    expect_exact(ops::div(da, db), ops::div(a, *b), "div " + shape);
  }
}

TEST(CudaElementwise, GateSoftmaxAndLayoutOps) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor x = uniform_tensor({2, 384, 257}, 9, -3.0, 3.0);
  const Tensor dx = cuda(x);
  expect_pointwise(ops::gated_tanh_sigmoid(dx), ops::gated_tanh_sigmoid(x), "gated_tanh_sigmoid");
  const Tensor logits = uniform_tensor({64, 301}, 10, -20.0, 20.0);
  expect_pointwise(ops::softmax(cuda(logits)), ops::softmax(logits), "softmax");
  expect_exact(ops::transpose(dx, 1, 2), ops::transpose(x, 1, 2), "transpose(1, 2)");
  const Tensor x4 = uniform_tensor({2, 37, 2, 96}, 11);
  expect_exact(ops::transpose(cuda(x4), 1, 2), ops::transpose(x4, 1, 2), "transpose 4-d (1, 2)");
  expect_exact(ops::transpose(cuda(x4), 0, 3), ops::transpose(x4, 0, 3), "transpose 4-d (0, 3)");
  expect_exact(ops::narrow(dx, 1, 100, 192), ops::narrow(x, 1, 100, 192), "narrow");
  expect_exact(ops::narrow(dx, 2, 5, 40), ops::narrow(x, 2, 5, 40), "narrow last dim");
  const Tensor y = uniform_tensor({2, 96, 257}, 12);
  expect_exact(ops::cat({dx, cuda(y)}, 1), ops::cat({x, y}, 1), "cat");
  expect_exact(ops::flip(dx, 1), ops::flip(x, 1), "flip");
  expect_exact(ops::sum(dx, 1, true), ops::sum(x, 1, true), "sum over channels");
  expect_exact(ops::sum(dx, 2, false), ops::sum(x, 2, false), "sum over time");
}

TEST(CudaNn, LinearMatmulEmbeddingAndGatherFrames) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor x = uniform_tensor({3, 141, 192}, 13);
  const Tensor w = uniform_tensor({768, 192}, 14, -0.1, 0.1);
  const Tensor b = uniform_tensor({768}, 15);
  expect_close(ops::linear(cuda(x), cuda(w), cuda(b)), ops::linear(x, w, b), "linear with bias");
  expect_close(ops::linear(cuda(x), cuda(w), Tensor()), ops::linear(x, w, Tensor()), "linear without bias");
  const Tensor a = uniform_tensor({4, 37, 96}, 16), m = uniform_tensor({4, 96, 53}, 17);
  expect_close(ops::matmul(cuda(a), cuda(m)), ops::matmul(a, m), "batched matmul");
  const Tensor table = uniform_tensor({178, 192}, 18);
  std::vector<int32_t> ids;
  for (int i = 0; i < 2 * 57; ++i) ids.push_back((i * 37) % 178);
  expect_exact(ops::embedding(cuda(table), ids, 2, 57), ops::embedding(table, ids, 2, 57), "embedding");
  EXPECT_THROW(ops::embedding(cuda(table), std::vector<int32_t>{0, 178}, 1, 2), Error);
  const Tensor means = uniform_tensor({2, 192, 57}, 19);
  std::vector<int32_t> index;
  for (int b2 = 0; b2 < 2; ++b2)
    for (int f = 0; f < 200; ++f) index.push_back(b2 == 1 && f >= 150 ? -1 : f * 57 / 200);
  expect_exact(ops::gather_frames(cuda(means), index, 200), ops::gather_frames(means, index, 200), "gather_frames");
}

struct ConvCase {
  const char* name;
  int B, Cin, T, Cout, K, stride, pad_left, pad_right, dilation, groups;
};

TEST(CudaNn, Conv1dMatchesTheCpuOnBothPaths) {
  VITSCUDA_REQUIRE_CUDA();
  const ConvCase cases[] = {
      {"decoder conv_pre", 1, 192, 125, 512, 7, 1, 3, 3, 1, 1},
      {"resblock k11 dilation 5", 2, 64, 1003, 64, 11, 1, 25, 25, 5, 1},
      {"resblock k3 dilation 3", 1, 256, 500, 256, 3, 1, 3, 3, 3, 1},
      {"wavenet in_layer k5 dilation 2", 2, 192, 211, 384, 5, 1, 4, 4, 2, 1},
      {"1x1 projection", 3, 192, 97, 384, 1, 1, 0, 0, 1, 1},
      {"depthwise (DDS conv)", 2, 192, 77, 192, 3, 1, 9, 9, 9, 192},
      {"grouped, strided", 2, 64, 101, 32, 4, 2, 1, 1, 1, 4},
      {"asymmetric padding (even kernel)", 2, 48, 64, 40, 4, 1, 1, 2, 1, 1},
      {"decoder conv_post", 1, 32, 4000, 1, 7, 1, 3, 3, 1, 1},
  };
  const kernels::Conv1dCudaPath saved = kernels::conv1d_cuda_path();
  for (const ConvCase& c : cases) {
    const Tensor x = uniform_tensor({c.B, c.Cin, c.T}, 20);
    const Tensor w = uniform_tensor({c.Cout, c.Cin / c.groups, c.K}, 21, -0.2, 0.2);
    const Tensor b = uniform_tensor({c.Cout}, 22);
    const Tensor ref = ops::conv1d(x, w, b, c.stride, c.pad_left, c.pad_right, c.dilation, c.groups);
    for (auto path : {kernels::Conv1dCudaPath::Auto, kernels::Conv1dCudaPath::Im2colGemm}) {
      kernels::conv1d_set_cuda_path(path);
      const Tensor got = ops::conv1d(cuda(x), cuda(w), cuda(b), c.stride, c.pad_left, c.pad_right, c.dilation, c.groups);
      expect_close(got, ref, std::string(c.name) + (path == kernels::Conv1dCudaPath::Auto ? " (auto)" : " (im2col)"),
                   path == kernels::Conv1dCudaPath::Auto ? kCudnn : kReduction);
    }
  }
  kernels::conv1d_set_cuda_path(saved);
}

TEST(CudaNn, ConvTranspose1dMatchesTheCpuAtTheUpsamplerShapes) {
  VITSCUDA_REQUIRE_CUDA();
  const int shapes[][6] = {
      // B, Cin, T, Cout, K, stride  (padding (K - stride) / 2 as HiFi-GAN)
      {1, 512, 63, 256, 16, 8}, {2, 256, 101, 128, 16, 8}, {1, 128, 400, 64, 4, 2}, {2, 64, 333, 32, 4, 2},
      {1, 16, 9, 8, 5, 3},  // odd (K - stride): output longer than T * stride
  };
  for (const auto& s : shapes) {
    const int pad = (s[4] - s[5]) / 2;
    const Tensor x = uniform_tensor({s[0], s[1], s[2]}, 23);
    const Tensor w = uniform_tensor({s[1], s[3], s[4]}, 24, -0.1, 0.1);
    const Tensor b = uniform_tensor({s[3]}, 25);
    expect_close(ops::conv_transpose1d(cuda(x), cuda(w), cuda(b), s[5], pad), ops::conv_transpose1d(x, w, b, s[5], pad),
                 "conv_transpose1d Cin " + std::to_string(s[1]) + " K " + std::to_string(s[4]), kCudnn);
  }
}

TEST(CudaNn, LayerNormsAndWeightNorm) {
  VITSCUDA_REQUIRE_CUDA();
  // Offset, large-ish values: a one-pass variance would lose digits here.
  const Tensor x = ops::add_scalar(uniform_tensor({3, 141, 192}, 26, -2.0, 2.0), 50.0);
  const Tensor g = uniform_tensor({192}, 27, 0.5, 1.5), be = uniform_tensor({192}, 28);
  expect_close(ops::layer_norm(cuda(x), cuda(g), cuda(be), 1e-5), ops::layer_norm(x, g, be, 1e-5), "layer_norm", 1e-5);
  const Tensor xc = ops::add_scalar(uniform_tensor({3, 192, 141}, 29, -2.0, 2.0), 50.0);
  expect_close(ops::layer_norm_channels(cuda(xc), cuda(g), cuda(be), 1e-4),
               ops::layer_norm_channels(xc, g, be, 1e-4), "layer_norm_channels", 1e-5);
  const Tensor v = uniform_tensor({512, 192, 7}, 30), gn = uniform_tensor({512, 1, 1}, 31, 0.1, 2.0);
  expect_close(ops::weight_norm(cuda(gn), cuda(v)), ops::weight_norm(gn, v), "weight_norm", 1e-6);
}

TEST(CudaAttention, WindowedRelativeAttentionWithPaddingMatchesTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  const int64_t B = 2, H = 2, T = 151, D = 96;
  for (int window : {4, 0}) {
    const Tensor q = uniform_tensor({B, H, T, D}, 32), k = uniform_tensor({B, H, T, D}, 33),
                 v = uniform_tensor({B, H, T, D}, 34);
    Tensor ek, ev;
    if (window > 0) {
      ek = uniform_tensor({1, 2 * window + 1, D}, 35);
      ev = uniform_tensor({1, 2 * window + 1, D}, 36);
    }
    Tensor mask = Tensor::zeros({B, T});
    for (int64_t t = 0; t < T; ++t) mask.data<float>()[t] = 1.0f;  // item 0 full, item 1 padded after 90
    for (int64_t t = 0; t < 90; ++t) mask.data<float>()[T + t] = 1.0f;
    const Tensor ref = ops::relative_attention(q, k, v, ek, ev, mask, window);
    const Tensor got = ops::relative_attention(cuda(q), cuda(k), cuda(v), cuda(ek), cuda(ev), cuda(mask), window);
    expect_close(got, ref, "relative_attention window " + std::to_string(window));
  }
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
