// CUDA backward against the CPU backward for what the op case list (tests/support/op_cases.h, run
// on the device by test_cuda_op_cases.cpp) does not hold yet, the log-mel and the masked L1 loss,
// and a whole training step. Skips itself without a usable CUDA device.
//
// Each op is checked through L = sum((op(x) + op(x)) * r) with a fixed random r: the op runs
// twice, so every input gradient is the sum of two backward calls and the kernels' "accumulate
// (+=)" contract is exercised on the device, and the weighted sum keeps gradients that a plain
// sum would cancel visible. Tolerance: relative L2 as in op_cases.h (kCudnn's 1e-4 for the
// log-mel, whose STFT sums in another order, kReduction's 2e-5 otherwise).
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "model/mel.h"
#include "model/model_dir.h"
#include "model/trainer.h"
#include "support/gradcheck.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::max_abs_diff;
using vitscuda::testing::relative_l2;
using vitscuda::testing::uniform_tensor;

namespace {

constexpr double kGradTolerance = 2e-5;

// A copy of t on `device` whose gradient the tape accumulates.
Tensor leaf(const Tensor& t, Device device) { return vitscuda::testing::requiring_grad(t.to(device).clone()); }

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// Gradients of every input (in order) of L = sum((op + op) * r), on `device`.
std::vector<Tensor> gradients(const Op& op, const std::vector<Tensor>& inputs, Device device, uint64_t seed) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) leaves.push_back(t.defined() ? leaf(t, device) : Tensor());
  autograd::Tape tape;
  Tensor loss;
  {
    autograd::RecordingScope recording(tape);
    Tensor y = ops::add(op(leaves), op(leaves));
    const Tensor r = uniform_tensor(y.shape(), seed).to(device);
    loss = ops::linear(y.reshape({1, y.numel()}), r.reshape({1, r.numel()}), Tensor());
  }
  tape.backward(loss);
  std::vector<Tensor> grads;
  for (const Tensor& l : leaves) grads.push_back(l.defined() && l.grad_slot()->grad.defined() ? l.grad_slot()->grad : Tensor());
  return grads;
}

void check_backward(const std::string& name, const Op& op, const std::vector<Tensor>& inputs,
                    double tol = kGradTolerance) {
  const std::vector<Tensor> cpu = gradients(op, inputs, Device::CPU, 99);
  const std::vector<Tensor> gpu = gradients(op, inputs, Device::CUDA, 99);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    ASSERT_EQ(cpu[i].defined(), gpu[i].defined()) << name << ": input " << i;
    if (!cpu[i].defined()) continue;
    EXPECT_EQ(gpu[i].device(), Device::CUDA) << name;
    const double err = relative_l2(gpu[i], cpu[i]);
    EXPECT_LT(err, tol) << name << ": gradient of input " << i << " " << inputs[i].describe() << ", relative L2 "
                        << err << ", max |diff| " << max_abs_diff(gpu[i], cpu[i]);
  }
}

TEST(CudaBackward, LogMelAndMaskedL1) {
  VITSCUDA_REQUIRE_CUDA();
  model::MelConfig mc;  // the VITS loss: n_fft 1024, hop 256, 80 mels at 16 kHz
  const model::MelSpectrogram mel(mc);
  const Tensor wave = uniform_tensor({2, 256 * 24}, 50, -0.5, 0.5);
  check_backward("log_mel", [&mel](const std::vector<Tensor>& in) { return mel.log_mel(in[0]); }, {wave}, 1e-4);
  const Tensor target = uniform_tensor({2, 80, 24}, 51, -5, 1);
  Tensor mask = Tensor::zeros({2, 1, 24});
  for (int t = 0; t < 24; ++t) mask.data<float>()[t] = 1.0f;
  for (int t = 0; t < 17; ++t) mask.data<float>()[24 + t] = 1.0f;
  check_backward("masked_l1",
                 [mask](const std::vector<Tensor>& in) {
                   return ops::masked_l1_loss(in[0], in[1], mask.to(in[0].device())).reshape({1});
                 },
                 {uniform_tensor({2, 80, 24}, 52, -5, 1), target});
}

// One trainer update of the tiny fixture model on both devices: the same loss, gradient norm and
// parameter change (AdamW's normalised step makes the update sensitive only where a gradient is
// near zero, so the updates are compared in relative L2).
TEST(CudaTraining, OneUpdateMatchesTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  std::vector<model::TrainingItem> batch(2);
  Rng rng(5);
  for (size_t b = 0; b < batch.size(); ++b) {
    for (int i = 0; i < 12 + 5 * static_cast<int>(b); ++i) batch[b].ids.push_back(1 + (i * 3 + static_cast<int>(b)) % 20);
    Tensor w = Tensor::empty({static_cast<int64_t>(16 * (40 + 8 * b))});  // hop 16 in the tiny model
    rng.fill_uniform(w, -0.3, 0.3);
    batch[b].wave = w.to_float_vector();
  }
  std::map<Device, model::StepStats> stats;
  std::map<Device, std::vector<float>> delta;
  for (Device device : {Device::CPU, Device::CUDA}) {
    model::LoadedModel loaded = model::load_model_dir(vitscuda::testing::data_path("golden/tiny_sdp"));
    model::VitsModel& vits = *loaded.model;
    vits.to(device);
    model::TrainerOptions options;
    model::MelSpectrogram mel(model::mel_config_for(vits.config()));
    model::MelTrainer trainer(vits, mel, options, 17);
    const std::vector<float> before = vits.params().flat().to_float_vector();
    stats[device] = trainer.step({batch}, 0);
    const std::vector<float> after = vits.params().flat().to_float_vector();
    for (size_t i = 0; i < before.size(); ++i) delta[device].push_back(after[i] - before[i]);
  }
  EXPECT_TRUE(stats[Device::CUDA].finite);
  EXPECT_NEAR(stats[Device::CUDA].loss, stats[Device::CPU].loss, 1e-5 * std::fabs(stats[Device::CPU].loss));
  EXPECT_NEAR(stats[Device::CUDA].grad_norm, stats[Device::CPU].grad_norm, 1e-4 * stats[Device::CPU].grad_norm);
  const Tensor dc = Tensor::from_vector(delta[Device::CPU], {static_cast<int64_t>(delta[Device::CPU].size())});
  const Tensor dg = Tensor::from_vector(delta[Device::CUDA], {static_cast<int64_t>(delta[Device::CUDA].size())});
  EXPECT_LT(relative_l2(dg, dc), 1e-2) << "parameter updates differ";
  EXPECT_GT(stats[Device::CUDA].peak_bytes, 0u);
}

}  // namespace
