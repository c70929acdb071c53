// The duration predictors' training loss (model::duration_predictor_loss) on the GPU against the CPU:
// the per-item loss and the gradient of every parameter, for the stochastic and the plain predictor with
// speaker conditioning. Skips itself without a usable CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/parameters.h"
#include "io/hf_config.h"
#include "model/duration_predictor.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::relative_l2;

namespace {

// float32 on both devices; the convolutions may run cuDNN's FFT/Winograd algorithms (fp32 error up to
// ~1e-5 relative, kCudnn in tests/support/op_cases.h) and reductions sum in another order: 1e-4 relative
// L2, while a wrong index or a kernel that ignores the mask gives O(1) differences.
constexpr double kTolerance = 1e-4;

io::VitsConfig config_for(bool stochastic) {
  nlohmann::json fields = {{"hidden_size", 16},
                           {"duration_predictor_filter_channels", 24},
                           {"depth_separable_num_layers", 2},
                           {"duration_predictor_flow_bins", 4},
                           {"duration_predictor_num_flows", 2},
                           {"duration_predictor_tail_bound", 2.0},
                           {"use_stochastic_duration_prediction", stochastic},
                           {"num_speakers", 3},
                           {"speaker_embedding_size", 6}};
  return io::VitsConfig::from_json(fields, "duration predictor (CUDA)");
}

struct Inputs {
  Tensor hidden, mask, speaker, durations, noise;
  Inputs to(Device d) const { return {hidden.to(d), mask.to(d), speaker.to(d), durations.to(d), noise.to(d)}; }
};

Inputs make_inputs(const io::VitsConfig& config) {
  const int64_t B = 2, T = 11;
  Inputs in;
  in.hidden = vitscuda::testing::normal_tensor({B, config.hidden_size, T}, 31).to(DType::F32);
  in.speaker = vitscuda::testing::normal_tensor({B, config.speaker_embedding_size, 1}, 32).to(DType::F32);
  in.noise = vitscuda::testing::normal_tensor({B, 2, T}, 33).to(DType::F32);
  std::vector<float> mask(B * T, 0.0f), durations(B * T, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < (b == 0 ? T : 6); ++t) {
      mask[b * T + t] = 1.0f;
      durations[b * T + t] = static_cast<float>(1 + (5 * t + 3 * b) % 7);
    }
  in.mask = Tensor::from_vector(mask, {B, 1, T});
  in.durations = Tensor::from_vector(durations, {B, 1, T});
  return in;
}

// The per-item loss on `device`, with the gradient of its batch sum in the store.
Tensor loss_on(const io::VitsConfig& config, ParameterStore& store, const Inputs& cpu_inputs, Device device) {
  store.to(device);
  store.zero_grad();
  const Inputs in = cpu_inputs.to(device);
  autograd::Tape tape;
  Tensor loss, total;
  {
    autograd::RecordingScope recording(tape);
    loss = model::duration_predictor_loss(config, store, in.hidden, in.mask, in.speaker, in.durations, in.noise);
    total = ops::sum(loss, 0, false);
  }
  tape.backward(total);
  return loss;
}

class CudaDurationTraining : public ::testing::TestWithParam<bool> {};

TEST_P(CudaDurationTraining, LossAndGradientsMatchTheCpu) {
  VITSCUDA_REQUIRE_CUDA();
  const io::VitsConfig config = config_for(GetParam());
  ParameterStore store;
  model::declare_duration_predictor(config, store);
  store.finalize();
  store.initialize(41);
  // N(0, 0.2) on every value, so the zero affine flows and unit LayerNorms are not special points.
  const std::vector<float> noise =
      vitscuda::testing::normal_tensor(store.flat().shape(), 42, 0.2).to(DType::F32).to_float_vector();
  float* values = store.flat().data<float>();
  for (size_t i = 0; i < noise.size(); ++i) values[i] += noise[i];
  store.enable_grad([](const std::string&) { return true; });
  const Inputs inputs = make_inputs(config);

  const Tensor cpu_loss = loss_on(config, store, inputs, Device::CPU);
  std::vector<Tensor> cpu_grads;
  for (const ParameterInfo& info : store.params()) cpu_grads.push_back(store.grad(info.name).clone());
  const Tensor gpu_loss = loss_on(config, store, inputs, Device::CUDA);
  ASSERT_EQ(gpu_loss.device(), Device::CUDA);

  EXPECT_LT(relative_l2(gpu_loss, cpu_loss), kTolerance) << "loss";
  double worst = 0;
  for (size_t i = 0; i < store.params().size(); ++i) {
    const std::string& name = store.params()[i].name;
    const double err = relative_l2(store.grad(name), cpu_grads[i]);
    EXPECT_LT(err, kTolerance) << "gradient of " << name;
    worst = std::max(worst, err);
  }
  std::cout << "[ cuda duration loss ] " << (GetParam() ? "stochastic" : "plain") << ": loss relative L2 "
            << relative_l2(gpu_loss, cpu_loss) << ", worst gradient relative L2 " << worst << "\n";
}

INSTANTIATE_TEST_SUITE_P(Predictors, CudaDurationTraining, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Stochastic" : "Plain");
                         });

}  // namespace
