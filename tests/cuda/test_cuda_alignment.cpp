// The monotonic alignment search on the device against the CPU where the op case (random values, tested by
// test_cuda_op_cases.cpp) rarely decides anything by a tie: integer-valued and constant log-likelihoods at the
// training's size, whose backtrack comparisons tie often, and the training's own log-likelihood computed on
// the device. The map must be identical. Skipped (with the reason) without a usable CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "model/alignment.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

TEST(CudaAlignmentSearch, TiedValuesGiveTheCpuMapAtTrainingSize) {
  VITSCUDA_REQUIRE_CUDA();
  const int64_t B = 16, F = 400, T = 150;
  std::vector<int64_t> frames, tokens;
  for (int64_t b = 0; b < B; ++b) {
    frames.push_back(F - 13 * b);
    tokens.push_back(T - 5 * b);
  }
  frames[3] = tokens[3];  // one item with Ty == Tx
  tokens[4] = 1;          // one with a single token
  for (const int variant : {0, 1}) {
    SCOPED_TRACE(variant == 0 ? "integers in [-2, 2]" : "constant -1");
    std::vector<float> values(B * F * T, -1.f);
    if (variant == 0) {
      const Tensor noise = testing::normal_tensor({B * F * T}, 31, 1.5);
      for (int64_t i = 0; i < B * F * T; ++i)
        values[i] = static_cast<float>(std::max(-2.0, std::min(2.0, std::round(noise.data<double>()[i]))));
    }
    const Tensor ll = Tensor::from_vector(values, {B, F, T});
    const std::vector<int32_t> cpu = ops::monotonic_alignment_search(ll, frames, tokens);
    const std::vector<int32_t> gpu = ops::monotonic_alignment_search(ll.to(Device::CUDA), frames, tokens);
    EXPECT_EQ(gpu, cpu);
  }
}

TEST(CudaAlignmentSearch, TrainingLogLikelihoodOnTheDeviceGivesTheCpuMap) {
  VITSCUDA_REQUIRE_CUDA();
  const int64_t B = 4, C = 192, F = 120, T = 50;
  const Tensor z = testing::uniform_tensor({B, C, F}, 41), m = testing::uniform_tensor({B, C, T}, 42);
  const Tensor logs = ops::add_scalar(ops::scale(testing::uniform_tensor({B, C, T}, 43), 0.3), -0.5);
  const Tensor cpu_ll = model::alignment_log_likelihood(z, m, logs);
  const Tensor gpu_ll = model::alignment_log_likelihood(z.to(Device::CUDA), m.to(Device::CUDA), logs.to(Device::CUDA));
  ASSERT_EQ(gpu_ll.device(), Device::CUDA);
  // cuBLAS sums the 192 channels in another order: ~sqrt(192) * 6e-8 relative to the terms (~1e3 here).
  EXPECT_LT(testing::relative_l2(gpu_ll.to(Device::CPU), cpu_ll), 1e-5);
  const std::vector<int64_t> frames = {120, 100, 77, 50}, tokens = {50, 31, 40, 50};
  // The same input on both devices: the identical map.
  EXPECT_EQ(ops::monotonic_alignment_search(gpu_ll, frames, tokens),
            ops::monotonic_alignment_search(gpu_ll.to(Device::CPU), frames, tokens));
}

}  // namespace
}  // namespace vitscuda
