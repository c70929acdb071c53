// CUDA backward against the CPU backward, op by op, and a whole training step. Skips itself
// without a usable CUDA device.
//
// Each op is checked through L = sum((op(x) + op(x)) * r) with a fixed random r: the op runs
// twice, so every input gradient is the sum of two backward calls and the kernels' "accumulate
// (+=)" contract is exercised on the device, and the weighted sum keeps gradients that a plain
// sum would cancel (softmax, normalisations) visible. Tolerance: relative L2 2e-5 between the
// two devices' gradients, the same reasoning as the forward reductions (float sums in another
// order, ~sqrt(K) * 6e-8); atomics in scatter-adds change the order again but not the size.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv1d.h"
#include "kernels/error.h"
#include "model/mel.h"
#include "model/model_dir.h"
#include "model/trainer.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::max_abs_diff;
using vitscuda::testing::relative_l2;
using vitscuda::testing::uniform_tensor;

namespace {

constexpr double kGradTolerance = 2e-5;
// cuDNN's FFT and Winograd algorithms round differently again (~1e-5 relative).
constexpr double kCudnnGradTolerance = 1e-4;

Tensor leaf(const Tensor& t, Device device) {
  Tensor x = t.to(device).clone();
  auto slot = std::make_shared<autograd::GradSlot>();
  slot->shape = x.shape();
  slot->dtype = x.dtype();
  slot->device = device;
  x.set_grad_slot(slot);
  return x;
}

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

TEST(CudaBackward, PointwiseBroadcastAndLayoutOps) {
  VITSCUDA_REQUIRE_CUDA();
  const Tensor x = uniform_tensor({2, 96, 131}, 1, -3.0, 3.0);
  const Tensor pos = uniform_tensor({2, 96, 131}, 2, 0.1, 5.0);
  const std::map<std::string, std::function<Tensor(const Tensor&)>> unary = {
      {"relu", [](const Tensor& t) { return ops::relu(t); }},
      {"leaky_relu", [](const Tensor& t) { return ops::leaky_relu(t, 0.1); }},
      {"gelu", [](const Tensor& t) { return ops::gelu(t); }},
      {"tanh", [](const Tensor& t) { return ops::tanh(t); }},
      {"sigmoid", [](const Tensor& t) { return ops::sigmoid(t); }},
      {"exp", [](const Tensor& t) { return ops::exp(t); }},
      {"softplus", [](const Tensor& t) { return ops::softplus(t); }},
      {"scale", [](const Tensor& t) { return ops::scale(t, 0.3); }},
      {"clamp_min", [](const Tensor& t) { return ops::clamp_min(t, 0.2); }},
  };
  for (const auto& [name, f] : unary) check_backward(name, [f = f](const std::vector<Tensor>& in) { return f(in[0]); }, {x});
  check_backward("log", [](const std::vector<Tensor>& in) { return ops::log(in[0]); }, {pos});
  const Tensor mask = uniform_tensor({2, 1, 131}, 3), bias = uniform_tensor({96, 1}, 4), full = uniform_tensor({2, 96, 131}, 5);
  for (const Tensor* b : {&full, &mask, &bias}) {
    const std::string s = shape_str(b->shape());
    check_backward("add " + s, [](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); }, {x, *b});
    check_backward("sub " + s, [](const std::vector<Tensor>& in) { return ops::sub(in[1], in[0]); }, {x, *b});
    check_backward("mul " + s, [](const std::vector<Tensor>& in) { return ops::mul(in[0], in[1]); }, {x, *b});
    check_backward("div " + s, [](const std::vector<Tensor>& in) { return ops::div(in[0], ops::add_scalar(in[1], 3.0)); },
                   {x, *b});
  }
  const Tensor g2 = uniform_tensor({2, 192, 77}, 6, -2.0, 2.0);
  check_backward("gated_tanh_sigmoid", [](const std::vector<Tensor>& in) { return ops::gated_tanh_sigmoid(in[0]); }, {g2});
  check_backward("softmax", [](const std::vector<Tensor>& in) { return ops::softmax(in[0]); }, {uniform_tensor({37, 211}, 7, -5, 5)});
  check_backward("transpose", [](const std::vector<Tensor>& in) { return ops::transpose(in[0], 1, 2); }, {x});
  check_backward("narrow", [](const std::vector<Tensor>& in) { return ops::narrow(in[0], 1, 10, 50); }, {x});
  check_backward("cat", [](const std::vector<Tensor>& in) { return ops::cat({in[0], in[1]}, 1); }, {x, full});
  check_backward("flip", [](const std::vector<Tensor>& in) { return ops::flip(in[0], 1); }, {x});
  check_backward("sum", [](const std::vector<Tensor>& in) { return ops::sum(in[0], 1, true); }, {x});
}

TEST(CudaBackward, LinearMatmulEmbeddingGatherFrames) {
  VITSCUDA_REQUIRE_CUDA();
  check_backward("linear",
                 [](const std::vector<Tensor>& in) { return ops::linear(in[0], in[1], in[2]); },
                 {uniform_tensor({2, 57, 192}, 10), uniform_tensor({384, 192}, 11, -0.1, 0.1), uniform_tensor({384}, 12)});
  check_backward("matmul", [](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); },
                 {uniform_tensor({4, 33, 96}, 13), uniform_tensor({4, 96, 41}, 14)});
  std::vector<int32_t> ids;
  for (int i = 0; i < 2 * 45; ++i) ids.push_back((i * 7) % 31);  // repeated ids: their gradients add up
  check_backward("embedding", [ids](const std::vector<Tensor>& in) { return ops::embedding(in[0], ids, 2, 45); },
                 {uniform_tensor({31, 192}, 15)});
  std::vector<int32_t> index;
  for (int b = 0; b < 2; ++b)
    for (int f = 0; f < 160; ++f) index.push_back(b == 1 && f >= 120 ? -1 : f * 45 / 160);
  check_backward("gather_frames", [index](const std::vector<Tensor>& in) { return ops::gather_frames(in[0], index, 160); },
                 {uniform_tensor({2, 192, 45}, 16)});
}

TEST(CudaBackward, ConvolutionsOnBothPaths) {
  VITSCUDA_REQUIRE_CUDA();
  struct Case {
    const char* name;
    int B, Cin, T, Cout, K, stride, pl, pr, dil, groups;
  };
  const Case cases[] = {
      {"resblock k7 dilation 3", 2, 64, 301, 64, 7, 1, 9, 9, 3, 1},
      {"wavenet in_layer k5", 1, 96, 150, 192, 5, 1, 2, 2, 1, 1},
      {"1x1", 2, 96, 101, 48, 1, 1, 0, 0, 1, 1},
      {"depthwise", 2, 64, 90, 64, 3, 1, 3, 3, 3, 64},
      {"asymmetric padding", 2, 32, 60, 24, 4, 1, 1, 2, 1, 1},
      {"strided grouped", 2, 32, 97, 16, 4, 2, 1, 1, 1, 2},
  };
  const kernels::Conv1dCudaPath saved = kernels::conv1d_cuda_path();
  for (const Case& c : cases)
    for (auto path : {kernels::Conv1dCudaPath::Auto, kernels::Conv1dCudaPath::Im2colGemm}) {
      kernels::conv1d_set_cuda_path(path);
      check_backward(std::string("conv1d ") + c.name + (path == kernels::Conv1dCudaPath::Auto ? " (auto)" : " (im2col)"),
                     [c](const std::vector<Tensor>& in) {
                       return ops::conv1d(in[0], in[1], in[2], c.stride, c.pl, c.pr, c.dil, c.groups);
                     },
                     {uniform_tensor({c.B, c.Cin, c.T}, 20), uniform_tensor({c.Cout, c.Cin / c.groups, c.K}, 21, -0.2, 0.2),
                      uniform_tensor({c.Cout}, 22)},
                     path == kernels::Conv1dCudaPath::Auto ? kCudnnGradTolerance : kGradTolerance);
    }
  kernels::conv1d_set_cuda_path(saved);
  for (const auto& s : std::vector<std::array<int, 6>>{{1, 128, 40, 64, 16, 8}, {2, 64, 70, 32, 4, 2}, {1, 16, 9, 8, 5, 3}}) {
    const int pad = (s[4] - s[5]) / 2;
    check_backward("conv_transpose1d K " + std::to_string(s[4]),
                   [s, pad](const std::vector<Tensor>& in) { return ops::conv_transpose1d(in[0], in[1], in[2], s[5], pad); },
                   {uniform_tensor({s[0], s[1], s[2]}, 23), uniform_tensor({s[1], s[3], s[4]}, 24, -0.1, 0.1),
                    uniform_tensor({s[3]}, 25)},
                   kCudnnGradTolerance);
  }
}

TEST(CudaBackward, NormsAttentionAndSpline) {
  VITSCUDA_REQUIRE_CUDA();
  check_backward("layer_norm", [](const std::vector<Tensor>& in) { return ops::layer_norm(in[0], in[1], in[2], 1e-5); },
                 {uniform_tensor({2, 41, 192}, 30, -2, 2), uniform_tensor({192}, 31, 0.5, 1.5), uniform_tensor({192}, 32)});
  check_backward("layer_norm_channels",
                 [](const std::vector<Tensor>& in) { return ops::layer_norm_channels(in[0], in[1], in[2], 1e-4); },
                 {uniform_tensor({2, 192, 41}, 33, -2, 2), uniform_tensor({192}, 34, 0.5, 1.5), uniform_tensor({192}, 35)});
  check_backward("weight_norm", [](const std::vector<Tensor>& in) { return ops::weight_norm(in[0], in[1]); },
                 {uniform_tensor({64, 1, 1}, 36, 0.2, 2.0), uniform_tensor({64, 32, 7}, 37)});
  const int64_t B = 2, H = 2, T = 47, D = 16;
  Tensor mask = Tensor::zeros({B, T});
  for (int64_t t = 0; t < T; ++t) mask.data<float>()[t] = 1.0f;
  for (int64_t t = 0; t < 30; ++t) mask.data<float>()[T + t] = 1.0f;
  for (int window : {4, 0}) {
    std::vector<Tensor> in = {uniform_tensor({B, H, T, D}, 38), uniform_tensor({B, H, T, D}, 39),
                              uniform_tensor({B, H, T, D}, 40)};
    if (window > 0) {
      in.push_back(uniform_tensor({1, 2 * window + 1, D}, 41));
      in.push_back(uniform_tensor({1, 2 * window + 1, D}, 42));
    }
    check_backward("relative_attention window " + std::to_string(window),
                   [mask, window](const std::vector<Tensor>& v) {
                     return ops::relative_attention(v[0], v[1], v[2], window > 0 ? v[3] : Tensor(),
                                                    window > 0 ? v[4] : Tensor(), mask.to(v[0].device()), window);
                   },
                   in);
  }
  const int64_t n = 600;
  const int bins = 10;
  for (bool reverse : {false, true})
    check_backward(std::string("spline ") + (reverse ? "reverse" : "forward"),
                   [reverse](const std::vector<Tensor>& v) {
                     auto [y, ld] = ops::rational_quadratic_spline(v[0], v[1], v[2], v[3], reverse, 5.0);
                     return ops::add(y, ld);
                   },
                   {uniform_tensor({n}, 43, -6, 6), uniform_tensor({n, bins}, 44, -1, 1), uniform_tensor({n, bins}, 45, -1, 1),
                    uniform_tensor({n, bins - 1}, 46, -1, 1)},
                   1e-4);  // the log-determinant's conditioning amplifies libm ulps (see the forward test)
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
                   return model::masked_l1_loss(in[0], in[1], mask.to(in[0].device())).reshape({1});
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
