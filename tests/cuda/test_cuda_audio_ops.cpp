// The audio and loss ops (engine/ops_audio.cpp, engine/ops_loss.cpp) on CUDA against the CPU, forward and
// backward, at the VITS loss's sizes (n_fft 1024, hop 256, 80 mels). Skips itself without a usable device.
//
// Tolerances:
// - linear spectrogram: 2e-5 of the peak magnitude. The CPU's float DFT is a 1024-term gemm sum (rounding
//   ~ sqrt(1024) * 6e-8 * sum|x w|, below 1e-5 of the peak, tests/kernels/test_stft_mel.cpp), cuFFT's a
//   log2(1024)-stage butterfly (smaller); a wrong frame, bin or window is off by O(peak).
// - log-mel forward 1e-4 absolute: the log turns those relative errors of the mel energies into absolute
//   ones (the same bound as float32 against torch in tests/model/test_mel.cpp).
// - log-mel backward 1e-4 relative L2 (as tests/cuda/test_cuda_backward.cpp's log_mel): C2R and the
//   overlap-add sum in other orders than the CPU's gemm.
// - masked L1: the loss sums in double on both sides (orders differ: ~1e-15 relative) and is rounded once to
//   float, so 1e-6 relative (the float ulp is 6e-8); the backward does the same float operations as the CPU
//   with an exact (integer) mask sum, so 1e-6 relative L2 leaves room only for one ulp of the scale.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/stft_mel.h"
#include "support/gradcheck.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::max_abs_diff;
using vitscuda::testing::relative_l2;
using vitscuda::testing::uniform_tensor;

namespace {

// A copy of t on `device` whose gradient the tape accumulates.
Tensor leaf(const Tensor& t, Device device) { return vitscuda::testing::requiring_grad(t.to(device).clone()); }

// A VITS-like filterbank stand-in: positive weights of order 0.01 (the Slaney bank's size), float32.
Tensor filterbank(int n_mels, int bins) { return uniform_tensor({n_mels, bins}, 61, 0.001, 0.02); }

TEST(CudaAudioOps, LinearSpectrogramMatchesTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  const kernels::StftPlan plan(1024, 256, 1024);
  const Tensor wave = uniform_tensor({2, 256 * 24 + 77}, 62, -0.5, 0.5);
  const Tensor cpu = ops::linear_spectrogram(wave, plan);
  const Tensor gpu = ops::linear_spectrogram(wave.to(Device::CUDA), plan);
  EXPECT_EQ(gpu.device(), Device::CUDA);  // computed there: never a silent CPU fallback
  ASSERT_EQ(gpu.shape(), cpu.shape());
  double peak = 0.0;
  for (float v : cpu.to_float_vector()) peak = std::max(peak, static_cast<double>(v));
  EXPECT_LT(max_abs_diff(gpu, cpu), 2e-5 * peak) << "peak " << peak;
}

TEST(CudaAudioOps, LogMelForwardAndBackwardMatchTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  const kernels::StftPlan plan(1024, 256, 1024);
  const Tensor fb = filterbank(80, plan.bins());
  const Tensor wave = uniform_tensor({2, 256 * 24}, 63, -0.5, 0.5);
  const Tensor r = uniform_tensor({2, 80, plan.frames(256 * 24)}, 64);
  std::vector<Tensor> out, grad;
  for (Device device : {Device::CPU, Device::CUDA}) {
    Tensor x = leaf(wave, device);
    autograd::Tape tape;
    Tensor loss;
    {
      autograd::RecordingScope recording(tape);
      Tensor y = ops::log_mel(x, plan, fb.to(device));
      EXPECT_EQ(y.device(), device);
      out.push_back(y.detach());
      const Tensor rd = r.to(device);
      loss = ops::linear(y.reshape({1, y.numel()}), rd.reshape({1, rd.numel()}), Tensor());
    }
    tape.backward(loss);
    grad.push_back(x.grad_slot()->grad);
  }
  EXPECT_LT(max_abs_diff(out[1], out[0]), 1e-4);
  ASSERT_TRUE(grad[1].defined());
  EXPECT_EQ(grad[1].device(), Device::CUDA);
  EXPECT_LT(relative_l2(grad[1], grad[0]), 1e-4);
  // The plan's device tables and cuFFT plans are built once and reused: a second call gives the same values.
  const Tensor again = ops::log_mel(wave.to(Device::CUDA), plan, fb.to(Device::CUDA));
  EXPECT_EQ(max_abs_diff(again, out[1]), 0.0);
}

TEST(CudaAudioOps, MaskedL1MatchesTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor generated = uniform_tensor({2, 80, 24}, 65, -5, 1), target = uniform_tensor({2, 80, 24}, 66, -5, 1);
  Tensor mask = Tensor::zeros({2, 1, 24});
  for (int t = 0; t < 24; ++t) mask.data<float>()[t] = 1.0f;
  for (int t = 0; t < 17; ++t) mask.data<float>()[24 + t] = 1.0f;
  std::vector<double> loss_value;
  std::vector<Tensor> grad_generated, grad_target;
  for (Device device : {Device::CPU, Device::CUDA}) {
    Tensor g = leaf(generated, device), t = leaf(target, device);
    autograd::Tape tape;
    Tensor loss;
    {
      autograd::RecordingScope recording(tape);
      loss = ops::masked_l1_loss(g, t, mask.to(device));
    }
    EXPECT_EQ(loss.device(), device);
    loss_value.push_back(loss.to(Device::CPU).data<float>()[0]);
    tape.backward(loss);
    grad_generated.push_back(g.grad_slot()->grad);
    grad_target.push_back(t.grad_slot()->grad);
  }
  EXPECT_NEAR(loss_value[1], loss_value[0], 1e-6 * std::abs(loss_value[0]));
  EXPECT_LT(relative_l2(grad_generated[1], grad_generated[0]), 1e-6);
  EXPECT_LT(relative_l2(grad_target[1], grad_target[0]), 1e-6);
  // No valid frame is an error on the device too.
  EXPECT_THROW(ops::masked_l1_loss(generated.to(Device::CUDA), target.to(Device::CUDA),
                                   Tensor::zeros({2, 1, 24}, DType::F32, Device::CUDA)),
               Error);
}

}  // namespace
