// The CUDA runtime's promises, each checked where it can break: random draws equal to the CPU's
// bit for bit, uploads that neither wait for the stream nor lose their bytes, cuDNN algorithm
// choices that depend on the shape alone (so runs repeat bit for bit), a bounded plan cache, the
// empty-input convolution, the binary-op backward on every launch path, and library workspaces
// counted by the memory budget. Each test skips itself without a usable CUDA device.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "engine/device_allocator.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv1d.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_common.cuh"
#include "kernels/device.h"
#include "kernels/elementwise.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::relative_l2;
using vitscuda::testing::uniform_tensor;

namespace {

std::vector<float> host_floats(const Tensor& t) { return t.to(Device::CPU).to_float_vector(); }

TEST(CudaRandom, UniformDrawsEqualTheCpuBitForBit) {
  VITSCUDA_REQUIRE_CUDA();
  // lo + (hi - lo) * u is rounded twice on both sides (kernels/philox.h); an FMA on the device
  // would round once and differ in the last bit for a fraction of the draws.
  const std::pair<double, double> ranges[] = {{-2.0, 3.0}, {0.0, 1.0}, {-0.1, 0.1}, {1e-3, 30.0}};
  for (const auto& [lo, hi] : ranges)
    for (uint64_t offset : {uint64_t(0), uint64_t(12345)}) {
      Rng cpu_rng(11), gpu_rng(11);
      cpu_rng.set_offset(offset);
      gpu_rng.set_offset(offset);
      Tensor h = Tensor::empty({4, 192, 301});
      Tensor d = Tensor::empty({4, 192, 301}, DType::F32, Device::CUDA);
      cpu_rng.fill_uniform(h, lo, hi);
      gpu_rng.fill_uniform(d, lo, hi);
      EXPECT_EQ(cpu_rng.offset(), gpu_rng.offset());
      const std::vector<float> a = h.to_float_vector(), b = host_floats(d);
      ASSERT_EQ(a.size(), b.size());
      int64_t differing = 0;
      for (size_t i = 0; i < a.size(); ++i) differing += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
      EXPECT_EQ(differing, 0) << "uniform [" << lo << ", " << hi << "), offset " << offset;
    }
}

// A host function on the compute stream that holds it for `milliseconds`: work queued after it waits.
void CUDART_CB hold_stream(void* milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(milliseconds)));
}

TEST(CudaUpload, SmallUploadsReturnAtOnceAndKeepTheirBytes) {
  VITSCUDA_REQUIRE_CUDA();
  constexpr int kUploads = 64;  // several times round the staging ring
  std::vector<Tensor> uploaded;
  std::vector<std::vector<float>> expected;
  for (int u = 0; u < kUploads; ++u)
    uploaded.push_back(Tensor::empty({1000 + 517 * u}, DType::F32, Device::CUDA));  // sizes grow the buffers
  kernels::device_synchronize();
  // The stream is held for a while: an upload that waited for it would take that long, and would
  // leave it idle behind it.
  static int hold_ms = 400;
  cudaStream_t stream = kernels::cuda::compute_stream();
  ASSERT_EQ(cudaLaunchHostFunc(stream, hold_stream, &hold_ms), cudaSuccess);
  const uint64_t waits_before = kernels::stream_waits();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> host;
  for (int u = 0; u < kUploads; ++u) {
    const int64_t n = uploaded[u].numel();
    host.assign(static_cast<size_t>(n), 0.0f);
    for (int64_t i = 0; i < n; ++i) host[static_cast<size_t>(i)] = static_cast<float>(u * 100000 + i);
    expected.push_back(host);
    kernels::copy_host_to_device(uploaded[u].raw(), host.data(), sizeof(float) * host.size());
    std::fill(host.begin(), host.end(), -1.0f);  // the caller's array is reused at once
  }
  const double upload_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady) << "an upload drained the stream";
  EXPECT_EQ(kernels::stream_waits(), waits_before);
  EXPECT_LT(upload_ms, hold_ms / 2.0) << "the uploads waited for the held stream";
  for (int u = 0; u < kUploads; ++u) EXPECT_EQ(host_floats(uploaded[u]), expected[u]) << "upload " << u;
}

TEST(CudaUpload, LargeUploadsWaitAndArrive) {
  VITSCUDA_REQUIRE_CUDA();
  const int64_t n = int64_t(12) << 18;  // 12 MiB: above the staged limit
  std::vector<float> host(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) host[static_cast<size_t>(i)] = static_cast<float>(i % 9973);
  const uint64_t waits_before = kernels::stream_waits();
  const Tensor d = Tensor::from_vector(host, {n}).to(Device::CUDA);
  EXPECT_GE(kernels::stream_waits(), waits_before + 1);
  EXPECT_EQ(host_floats(d), host);
}

// Shapes VITS meets: text encoder FFN, WaveNet (dilated), HiFi-GAN resblock, the transposed
// upsampler's own convolution (conv_transpose1d is its backward-data), grouped.
std::vector<kernels::cuda::CudnnConvShape> vits_conv_shapes(int in_length) {
  auto out = [&](int K, int stride, int pad, int dilation) {
    return int64_t((in_length + 2 * pad - dilation * (K - 1) - 1) / stride + 1);
  };
  return {{"text encoder ffn", 4, 192, in_length, 768, 3, 1, 1, 1, 1, out(3, 1, 1, 1)},
          {"wavenet", 4, 192, in_length, 384, 5, 1, 4, 2, 1, out(5, 1, 4, 2)},
          {"hifigan resblock", 2, 128, in_length, 128, 11, 1, 15, 3, 1, out(11, 1, 15, 3)},
          {"grouped", 2, 64, in_length, 64, 41, 4, 20, 1, 16, out(41, 4, 20, 1)}};
}

TEST(CudaConv, AlgorithmChoiceDependsOnTheShapeAlone) {
  VITSCUDA_REQUIRE_CUDA();
  // Two lengths of one class (bucket 256), met in either order after an empty cache: the same
  // algorithms for each shape, whatever was seen first.
  const int lengths[2] = {200, 251};
  ASSERT_EQ(kernels::cuda::conv_length_bucket(lengths[0]), kernels::cuda::conv_length_bucket(lengths[1]));
  std::vector<int> first, second;
  for (int order = 0; order < 2; ++order) {
    kernels::cuda::conv_plan_cache_clear();
    std::vector<int>& seen = order == 0 ? first : second;
    for (int k = 0; k < 2; ++k) {
      const int length = lengths[order == 0 ? k : 1 - k];
      for (const auto& shape : vits_conv_shapes(length))
        for (int direction = 0; direction < 3; ++direction)
          seen.push_back(kernels::cuda::cudnn_conv_algorithm(shape, direction));
    }
  }
  // `second` met the lengths in reverse: compare shape by shape.
  const size_t half = first.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    EXPECT_EQ(first[i], second[half + i]) << "choice " << i << " at length " << lengths[0];
    EXPECT_EQ(first[half + i], second[i]) << "choice " << i << " at length " << lengths[1];
  }
  // Nor does free memory matter: with the budget at what is already reserved (no room for a search
  // workspace, where a timed search would fall back to workspace-free algorithms), the same choices.
  DeviceAllocator& alloc = DeviceAllocator::instance();
  kernels::device_synchronize();
  alloc.empty_cache();
  const size_t old_budget = alloc.budget();
  alloc.set_budget(alloc.stats().reserved_bytes + 1);
  kernels::cuda::conv_plan_cache_clear();
  std::vector<int> tight;
  for (const auto& shape : vits_conv_shapes(lengths[0]))
    for (int direction = 0; direction < 3; ++direction)
      tight.push_back(kernels::cuda::cudnn_conv_algorithm(shape, direction));
  alloc.set_budget(old_budget);
  EXPECT_EQ(tight, std::vector<int>(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(tight.size())));
}

TEST(CudaConv, RepeatsBitForBitAfterTheCacheIsRebuilt) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor x = uniform_tensor({4, 192, 237}, 1).to(Device::CUDA);
  const Tensor w = uniform_tensor({384, 192, 5}, 2, -0.1, 0.1).to(Device::CUDA);
  const Tensor b = uniform_tensor({384}, 3).to(Device::CUDA);
  const Tensor dy = uniform_tensor({4, 384, 237}, 4).to(Device::CUDA);
  std::vector<std::vector<float>> runs[2];
  for (int run = 0; run < 2; ++run) {
    kernels::cuda::conv_plan_cache_clear();
    if (run == 1) {  // another length of the same class first: it must not change the choice
      const Tensor other = uniform_tensor({4, 192, 200}, 5).to(Device::CUDA);
      Tensor y_other = Tensor::empty({4, 384, 200}, DType::F32, Device::CUDA);
      kernels::conv1d_forward_cuda(other.data<float>(), w.data<float>(), b.data<float>(), y_other.data<float>(), 4,
                                   192, 200, 384, 5, 1, 4, 4, 2, 1);
    }
    Tensor y = Tensor::empty({4, 384, 237}, DType::F32, Device::CUDA);
    Tensor dx = Tensor::zeros({4, 192, 237}, DType::F32, Device::CUDA);
    Tensor dw = Tensor::zeros({384, 192, 5}, DType::F32, Device::CUDA);
    kernels::conv1d_forward_cuda(x.data<float>(), w.data<float>(), b.data<float>(), y.data<float>(), 4, 192, 237, 384,
                                 5, 1, 4, 4, 2, 1);
    kernels::conv1d_backward_cuda(x.data<float>(), w.data<float>(), dy.data<float>(), dx.data<float>(),
                                  dw.data<float>(), nullptr, 4, 192, 237, 384, 5, 1, 4, 4, 2, 1);
    runs[run] = {host_floats(y), host_floats(dx), host_floats(dw)};
  }
  const char* names[] = {"y", "dx", "dw"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(runs[0][i].size(), runs[1][i].size());
    EXPECT_EQ(std::memcmp(runs[0][i].data(), runs[1][i].data(), runs[0][i].size() * sizeof(float)), 0) << names[i];
  }
}

TEST(CudaConv, PlanCacheIsBounded) {
  VITSCUDA_REQUIRE_CUDA();
  kernels::cuda::conv_plan_cache_clear();
  // More classes than the limit (distinct batch sizes of a small convolution).
  const int classes = static_cast<int>(kernels::cuda::kConvPlanCacheLimit) + 40;
  for (int batch = 1; batch <= classes; ++batch) {
    const kernels::cuda::CudnnConvShape s{"cache bound", batch, 4, 20, 4, 3, 1, 1, 1, 1, 20};
    kernels::cuda::cudnn_conv_algorithm(s, 0);
  }
  EXPECT_EQ(kernels::cuda::conv_plan_cache_entries(), kernels::cuda::kConvPlanCacheLimit);
  // An evicted class is chosen again, the same way.
  const kernels::cuda::CudnnConvShape first{"cache bound", 1, 4, 20, 4, 3, 1, 1, 1, 1, 20};
  const int again = kernels::cuda::cudnn_conv_algorithm(first, 0);
  kernels::cuda::conv_plan_cache_clear();
  EXPECT_EQ(kernels::cuda::cudnn_conv_algorithm(first, 0), again);
}

TEST(CudaConv, EmptyInputGivesTheBiasLikeTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  // Tin = 0 with padding 3 on each side, K = 3: Tout = 4 windows over padding only.
  const int B = 2, Cin = 3, Cout = 5, K = 3, pad = 3;
  const int64_t Tout = kernels::conv1d_checked_output_length("test", B, Cin, 0, Cout, K, 1, pad, pad, 1, 1);
  ASSERT_EQ(Tout, 4);
  const Tensor w = uniform_tensor({Cout, Cin, K}, 6), b = uniform_tensor({Cout}, 7);
  std::vector<float> cpu(static_cast<size_t>(B * Cout * Tout), -7.0f);
  kernels::conv1d_forward_cpu<float>(nullptr, w.data<float>(), b.data<float>(), cpu.data(), B, Cin, 0, Cout, K, 1, pad,
                                     pad, 1, 1);
  const Tensor dw = w.to(Device::CUDA), db = b.to(Device::CUDA);
  Tensor y = Tensor::full({B, Cout, Tout}, -7.0, DType::F32, Device::CUDA);  // poisoned
  const Tensor x = Tensor::empty({B, Cin, 0}, DType::F32, Device::CUDA);
  kernels::conv1d_forward_cuda(x.data<float>(), dw.data<float>(), db.data<float>(), y.data<float>(), B, Cin, 0, Cout,
                               K, 1, pad, pad, 1, 1);
  EXPECT_EQ(host_floats(y), cpu);
}

// One binary op's gradients on both devices, raw kernels, accumulating into non-zero buffers.
void check_binary_backward(kernels::BinaryOp op, const Shape& a_shape, const Shape& b_shape, const Shape& out) {
  const int ndim = static_cast<int>(out.size());
  auto strides_of = [&](const Shape& s) {
    std::vector<int64_t> st(out.size(), 0);
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      st[d] = s[d] == 1 && out[d] != 1 ? 0 : stride;
      stride *= s[d];
    }
    return st;
  };
  const std::vector<int64_t> as = strides_of(a_shape), bs = strides_of(b_shape);
  const Tensor a = uniform_tensor(a_shape, 21, 0.5, 2.0), b = uniform_tensor(b_shape, 22, 0.5, 2.0);
  const Tensor dy = uniform_tensor(out, 23);
  Tensor da = uniform_tensor(a_shape, 24), db = uniform_tensor(b_shape, 25);
  Tensor da_gpu = da.to(Device::CUDA), db_gpu = db.to(Device::CUDA);
  const Tensor a_gpu = a.to(Device::CUDA), b_gpu = b.to(Device::CUDA), dy_gpu = dy.to(Device::CUDA);
  kernels::binary_backward_cpu<float>(op, a.data<float>(), as.data(), b.data<float>(), bs.data(), dy.data<float>(),
                                      da.data<float>(), db.data<float>(), out.data(), ndim);
  kernels::binary_backward_cuda(op, a_gpu.data<float>(), as.data(), b_gpu.data<float>(), bs.data(),
                                dy_gpu.data<float>(), da_gpu.data<float>(), db_gpu.data<float>(), out.data(), ndim);
  // A full-shaped operand's gradient is one IEEE product or quotient per element added to the buffer,
  // the same on both devices up to the rounding of Div's two operations (a few ulp). A broadcast
  // operand's sums its positions in another association than the CPU: float sums of up to 1204 terms
  // (the [1, C, 1] case), ~sqrt(n) * 6e-8 ~ 2e-6 relative; 2e-5 relative L2 as for every reduction of
  // the op cases, still far below the O(1) error of a wrong index or a lost term.
  EXPECT_LT(relative_l2(da_gpu, da), 2e-5) << "da, a " << shape_str(a_shape) << " b " << shape_str(b_shape);
  EXPECT_LT(relative_l2(db_gpu, db), 2e-5) << "db, a " << shape_str(a_shape) << " b " << shape_str(b_shape);
}

TEST(CudaElementwise, BinaryBackwardOnEveryLaunchPath) {
  VITSCUDA_REQUIRE_CUDA();
  using kernels::BinaryOp;
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    // Both full (the contiguous fast path).
    check_binary_backward(op, {4, 192, 301}, {4, 192, 301}, {4, 192, 301});
    // Full x masked by [B, 1, T]: x's gradient one thread per element with the mask's offset
    // decoded; the mask's one warp per element (192 positions each).
    check_binary_backward(op, {4, 192, 301}, {4, 1, 301}, {4, 192, 301});
    // A channel bias [1, C, 1]: 4 * 301 positions per element (warp path).
    check_binary_backward(op, {1, 192, 1}, {4, 192, 301}, {4, 192, 301});
    // Few broadcast positions per element (3 < 32): one thread per element sums them in order.
    check_binary_backward(op, {4, 3, 50}, {4, 1, 50}, {4, 3, 50});
    // Both operands broadcast: an outer product [B, 1, T] x [1, C, 1].
    check_binary_backward(op, {2, 1, 77}, {1, 24, 1}, {2, 24, 77});
  }
}

TEST(CudaAllocator, LibraryWorkspacesCountAgainstTheBudget) {
  VITSCUDA_REQUIRE_CUDA();
  // A matrix product creates the cuBLAS handle, whose workspace must come from our allocator.
  const Tensor a = uniform_tensor({64, 64}, 31).to(Device::CUDA), b = uniform_tensor({64, 64}, 32).to(Device::CUDA);
  const Tensor c = ops::matmul(a, b);
  kernels::device_synchronize();
  EXPECT_GE(kernels::library_workspace_bytes(), size_t(4) << 20);
  EXPECT_GE(DeviceAllocator::instance().stats().live_bytes, kernels::library_workspace_bytes());
  // The out-of-memory message names the libraries' own memory next to the budget. The cache is
  // emptied first, so that no cached block serves the request and the budget is what refuses it.
  DeviceAllocator& alloc = DeviceAllocator::instance();
  kernels::device_synchronize();
  alloc.empty_cache();
  const size_t old_budget = alloc.budget();
  alloc.set_budget(alloc.stats().reserved_bytes + (size_t(1) << 20));
  try {
    Tensor too_big = Tensor::empty({int64_t(16) << 20}, DType::F32, Device::CUDA);
    ADD_FAILURE() << "allocation over the budget did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA libraries' own memory"), std::string::npos) << e.what();
  }
  alloc.set_budget(old_budget);
}

}  // namespace
