// AdamW, gradient clipping and learning-rate schedules against PyTorch
// (tests/data/engine/adam_cases.txt, written by tools/golden/make_adam_cases.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/optimizer.h"
#include "engine/parameters.h"
#include "support/test_support.h"

namespace vitscuda {
namespace {

using Array = vitscuda::testing::CaseArray;

const std::map<std::string, Array>& cases() {
  static const std::map<std::string, Array> c = vitscuda::testing::read_case_file("engine/adam_cases.txt");
  return c;
}

const Array& get(const std::string& name) {
  auto it = cases().find(name);
  VC_CHECK(it != cases().end(), "adam_cases.txt has no '" << name << "'");
  return it->second;
}

double scalar(const std::string& name) { return get(name).values.at(0); }

// f32 flat tensor from a stored array (the stored doubles are float32 values, exact).
Tensor flat_f32(const std::string& name) {
  const Array& a = get(name);
  std::vector<float> v(a.values.begin(), a.values.end());
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

std::vector<kernels::AdamRange> fixture_ranges(double weight_decay) {
  const Array& r = get("decay_ranges");
  std::vector<kernels::AdamRange> ranges;
  int64_t covered = 0;
  const int64_t n = shape_numel(get("param.initial").shape);
  for (size_t i = 0; i < r.values.size(); i += 2) {
    const auto begin = static_cast<int64_t>(r.values[i]), end = static_cast<int64_t>(r.values[i + 1]);
    if (begin > covered) ranges.push_back({covered, begin, 0.0});
    ranges.push_back({begin, end, weight_decay});
    covered = end;
  }
  if (covered < n) ranges.push_back({covered, n, 0.0});
  return ranges;
}

AdamWConfig fixture_config(const std::string& c) {
  AdamWConfig config;
  config.beta1 = get(c + ".betas").values[0];
  config.beta2 = get(c + ".betas").values[1];
  config.eps = scalar(c + ".eps");
  config.weight_decay = scalar(c + ".weight_decay");
  return config;
}

// max |a - b| / scale, scale = max |b| (1 if that is 0).
double max_scaled_diff(const Tensor& a, const Tensor& b) {
  double scale = 0;
  const std::vector<float> bv = b.to_float_vector();
  for (float x : bv) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  return testing::max_abs_diff(a, b) / (scale > 0 ? scale : 1.0);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

enum class ClipMode { None, Separate, InPass };

struct RunResult {
  Tensor params;
  AdamW optimizer;
  std::vector<double> norms;
};

// Ten steps of the fixture: gradients grad.k, learning rates lrs[k], clipping as `mode`.
RunResult run_fixture(const std::string& c, ClipMode mode, int64_t first_step = 0, int64_t last_step = 10,
                      const AdamW* resume_from = nullptr, const Tensor* resume_params = nullptr) {
  const AdamWConfig config = fixture_config(c);
  Tensor params = resume_params ? resume_params->clone() : flat_f32("param.initial");
  AdamW opt(params.numel(), config, fixture_ranges(config.weight_decay));
  if (resume_from) opt.load_state(resume_from->exp_avg(), resume_from->exp_avg_sq(), resume_from->step_count());
  const double max_norm = scalar(c + ".max_norm");
  const std::vector<double>& lrs = get("lrs").values;
  std::vector<double> norms;
  for (int64_t k = first_step; k < last_step; ++k) {
    Tensor grads = flat_f32("grad." + std::to_string(k));
    double coef = 1.0;
    if (mode == ClipMode::Separate) {
      norms.push_back(clip_grad_norm(grads, max_norm));
    } else if (mode == ClipMode::InPass) {
      norms.push_back(global_norm(grads));
      coef = clip_coefficient(norms.back(), max_norm);
    }
    opt.step(params, grads, lrs[static_cast<size_t>(k)], 1.0, coef);
  }
  return {params, std::move(opt), norms};
}

// (a) Ten AdamW steps against torch.optim.AdamW.
// Everything but the square root reproduces ATen's CPU arithmetic bit for bit (same scalar
// roundings, same fused multiply-adds); torch's vectorised sqrt is up to ~0.75 ulp off the
// correctly rounded one we use, so a denominator can differ by 1 ulp (6e-8 relative). That
// perturbs a step of size <= lr (<= 1e-2 here) by <= 1e-9 and can flip the rounding of a
// parameter update: each flip is one ulp of the parameter (<= 2.4e-7 for |p| < 2), and ten
// steps give at most a few, so 1e-6 absolute on parameters of magnitude <= 2 bounds it.
// The moments never see the square root and must match to the last bit (clipping aside); this
// relies on ATen's x86-64 CPU kernels fusing lerp and addcmul into FMAs, as the installed torch
// does (a fixture regenerated where they do not would need ~1 ulp of slack here).
void expect_matches_torch(const std::string& c, const RunResult& r, double moment_tolerance) {
  const double param_err = testing::max_abs_diff(r.params, flat_f32(c + ".param.final"));
  const double m_err = max_scaled_diff(r.optimizer.exp_avg(), flat_f32(c + ".exp_avg.final"));
  const double v_err = max_scaled_diff(r.optimizer.exp_avg_sq(), flat_f32(c + ".exp_avg_sq.final"));
  EXPECT_LE(param_err, 1e-6) << c;
  EXPECT_LE(m_err, moment_tolerance) << c;
  EXPECT_LE(v_err, moment_tolerance) << c;
  EXPECT_EQ(r.optimizer.step_count(), static_cast<int64_t>(scalar(c + ".step")));
  std::printf("  %s: max |param - torch| = %.3g, max |m - torch| / max|m| = %.3g, max |v - torch| / max|v| = %.3g\n",
              c.c_str(), param_err, m_err, v_err);
}

TEST(AdamW, TenStepsMatchTorchDefaults) {
  const RunResult r = run_fixture("default", ClipMode::None);
  expect_matches_torch("default", r, 0.0);
  // The steps really moved the parameters (the comparison is not vacuous).
  EXPECT_GT(testing::max_abs_diff(r.params, flat_f32("param.initial")), 1e-2);
}

TEST(AdamW, TenStepsMatchTorchCustomHyperParameters) {
  expect_matches_torch("custom", run_fixture("custom", ClipMode::None), 0.0);
}

// clip_grad_norm_ before every step. Our norm is accumulated in double and torch's in float32,
// so the clip coefficients differ by a few float32 ulps (~3e-7 relative): the gradients fed to
// the moments, and so the moments, differ by that relative amount; the parameter argument of
// the unclipped cases still holds (the update is invariant to a common gradient scale up to eps).
TEST(AdamW, TenClippedStepsMatchTorch) {
  const RunResult separate = run_fixture("clipped", ClipMode::Separate);
  expect_matches_torch("clipped", separate, 1e-6);
  const std::vector<double>& torch_norms = get("clipped.total_norms").values;
  ASSERT_EQ(separate.norms.size(), torch_norms.size());
  for (size_t k = 0; k < torch_norms.size(); ++k)
    EXPECT_NEAR(separate.norms[k], torch_norms[k], 1e-6 * torch_norms[k]) << "step " << k;
  // Clipping inside the update pass is the same arithmetic as scaling the gradients first.
  const RunResult in_pass = run_fixture("clipped", ClipMode::InPass);
  EXPECT_TRUE(bitwise_equal(separate.params, in_pass.params));
  EXPECT_TRUE(bitwise_equal(separate.optimizer.exp_avg(), in_pass.optimizer.exp_avg()));
  EXPECT_TRUE(bitwise_equal(separate.optimizer.exp_avg_sq(), in_pass.optimizer.exp_avg_sq()));
}

// Saving the state after five steps and resuming in a fresh optimizer gives the same bits
// as ten uninterrupted steps.
TEST(AdamW, ResumeFromSavedStateIsExact) {
  const RunResult straight = run_fixture("default", ClipMode::None);
  const RunResult first_half = run_fixture("default", ClipMode::None, 0, 5);
  EXPECT_EQ(first_half.optimizer.step_count(), 5);
  const RunResult second_half =
      run_fixture("default", ClipMode::None, 5, 10, &first_half.optimizer, &first_half.params);
  EXPECT_TRUE(bitwise_equal(straight.params, second_half.params));
  EXPECT_TRUE(bitwise_equal(straight.optimizer.exp_avg(), second_half.optimizer.exp_avg()));
  EXPECT_TRUE(bitwise_equal(straight.optimizer.exp_avg_sq(), second_half.optimizer.exp_avg_sq()));
  EXPECT_EQ(second_half.optimizer.step_count(), 10);
}

// (d) at the engine level: one optimizer with a decay boundary equals one optimizer per group.
TEST(AdamW, BoundaryEqualsTwoSeparateOptimizers) {
  Tensor params = flat_f32("param.initial");
  const int64_t n = params.numel(), boundary = 100;
  AdamW fused(n, {}, adam_ranges_with_boundary(n, boundary, 0.01));
  const std::vector<float> all = params.to_float_vector();
  Tensor head = Tensor::from_vector(std::vector<float>(all.begin(), all.begin() + boundary), {boundary});
  Tensor tail = Tensor::from_vector(std::vector<float>(all.begin() + boundary, all.end()), {n - boundary});
  AdamWConfig no_decay;
  no_decay.weight_decay = 0.0;
  AdamW head_opt(boundary, {});
  AdamW tail_opt(n - boundary, no_decay);
  for (int k = 0; k < 10; ++k) {
    const Tensor grads = flat_f32("grad." + std::to_string(k));
    const std::vector<float> g = grads.to_float_vector();
    const double lr = get("lrs").values[static_cast<size_t>(k)];
    fused.step(params, grads, lr);
    head_opt.step(head, Tensor::from_vector(std::vector<float>(g.begin(), g.begin() + boundary), {boundary}), lr);
    tail_opt.step(tail, Tensor::from_vector(std::vector<float>(g.begin() + boundary, g.end()), {n - boundary}), lr);
  }
  std::vector<float> joined = head.to_float_vector();
  const std::vector<float> tail_values = tail.to_float_vector();
  joined.insert(joined.end(), tail_values.begin(), tail_values.end());
  EXPECT_TRUE(bitwise_equal(params, Tensor::from_vector(joined, {n})));
}

// (b) clip_grad_norm against torch.nn.utils.clip_grad_norm_ on grad.0.
// Norm: ours is accumulated in double, so it matches torch's float64 norm to rounding
// (245 terms: < 1e-13 relative) and torch's float32 result to float32 accuracy (1e-6).
// Clipped gradients: the two coefficients differ by at most a few float32 ulps, so each
// gradient differs by <= ~4e-7 of its magnitude; 1e-6 of the largest gradient bounds that.
TEST(ClipGradNorm, MatchesTorchWhenClippingTriggers) {
  Tensor grads = flat_f32("grad.0");
  const double total = clip_grad_norm(grads, scalar("clip.trigger.max_norm"));
  EXPECT_NEAR(total, scalar("clip.total_norm_f64"), 1e-13 * total);
  EXPECT_NEAR(total, scalar("clip.total_norm"), 1e-6 * total);
  const Tensor expected = flat_f32("clip.trigger.grads");
  const double err = max_scaled_diff(grads, expected);
  EXPECT_LE(err, 1e-6);
  EXPECT_NEAR(global_norm(grads), scalar("clip.trigger.max_norm"), 1e-5);  // clipped to max_norm
  std::printf("  clip (triggers): |norm - torch f64| = %.3g, max |g - torch| / max|g| = %.3g\n",
              std::fabs(total - scalar("clip.total_norm_f64")), err);
}

TEST(ClipGradNorm, LeavesGradientsAloneBelowMaxNorm) {
  Tensor grads = flat_f32("grad.0");
  const double total = clip_grad_norm(grads, scalar("clip.no_trigger.max_norm"));
  EXPECT_LT(total, scalar("clip.no_trigger.max_norm"));
  // torch multiplies by the clamped coefficient 1.0: the gradients keep every bit.
  EXPECT_TRUE(bitwise_equal(grads, flat_f32("clip.no_trigger.grads")));
  EXPECT_TRUE(bitwise_equal(grads, flat_f32("grad.0")));
}

TEST(ClipGradNorm, CoefficientAndNonFiniteNorms) {
  EXPECT_EQ(clip_coefficient(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(clip_coefficient(4.0, 1.0), 1.0 / (4.0 + 1e-6));
  EXPECT_EQ(clip_coefficient(INFINITY, 1.0), 0.0);
  EXPECT_TRUE(std::isnan(clip_coefficient(NAN, 1.0)));
  Tensor grads = Tensor::from_vector(std::vector<float>{3.0f, INFINITY}, {2});
  EXPECT_TRUE(std::isinf(clip_grad_norm(grads, 1.0)));
  EXPECT_TRUE(std::isnan(grads.to_float_vector()[1]));  // inf * 0, as torch
  Tensor ok = Tensor::from_vector(std::vector<float>{3.0f, 4.0f}, {2});
  EXPECT_THROW(clip_grad_norm(ok, 0.0), Error);
}

TEST(FlatBuffers, NormScaleZero) {
  Tensor x = Tensor::from_vector(std::vector<double>{1.0, -2.0, 2.0}, {3});
  EXPECT_EQ(global_norm(x), 3.0);
  scale_in_place(x, -0.5);
  EXPECT_EQ(x.to_float_vector(), (std::vector<float>{-0.5f, 1.0f, -1.0f}));
  zero_in_place(x);
  EXPECT_EQ(global_norm(x), 0.0);
}

// (c) Schedules: closed forms, and torch's / transformers' own schedulers.
TEST(LrSchedule, ClosedForms) {
  const double base = 2e-4, gamma = 0.999875;
  const LrSchedule constant = LrSchedule::constant(base);
  const LrSchedule warmup = LrSchedule::warmup_constant(base, 100);
  const LrSchedule exponential = LrSchedule::exponential(base, gamma);
  const LrSchedule both = LrSchedule::warmup_exponential(base, 100, gamma);
  for (int64_t step : {0, 1, 50, 99, 100, 101, 100000}) {
    for (int64_t epoch : {0, 1, 7, 1000}) {
      const double warm = step < 100 ? static_cast<double>(step) / 100.0 : 1.0;
      const double decay = std::pow(gamma, static_cast<double>(epoch));
      EXPECT_EQ(constant.lr_at(step, epoch), base);
      EXPECT_DOUBLE_EQ(warmup.lr_at(step, epoch), base * warm);
      EXPECT_DOUBLE_EQ(exponential.lr_at(step, epoch), base * decay);
      EXPECT_DOUBLE_EQ(both.lr_at(step, epoch), base * warm * decay);
    }
  }
  EXPECT_EQ(warmup.lr_at(0, 0), 0.0);
  EXPECT_DOUBLE_EQ(warmup.lr_at(50, 0), base / 2);
  EXPECT_DOUBLE_EQ(exponential.lr_at(0, 8000), base * std::exp(8000 * std::log(gamma)));
  EXPECT_THROW(LrSchedule::warmup_constant(base, 0), Error);
  EXPECT_THROW(LrSchedule::exponential(base, 1.5), Error);
  EXPECT_THROW(constant.lr_at(-1, 0), Error);
  EXPECT_EQ(LrSchedule::warmup_exponential(2e-4, 1000).describe(),
            "linear warm-up over 1000 steps then exponential decay gamma=0.999875 per epoch, base lr 0.0002");
}

// torch's ExponentialLR multiplies by gamma once per epoch; the closed form base * gamma^e
// differs by the accumulated rounding of those products, <= e ulp (400 epochs: < 1e-13 relative).
TEST(LrSchedule, ExponentialMatchesTorchExponentialLR) {
  const LrSchedule s =
      LrSchedule::exponential(scalar("schedule.exponential.base_lr"), scalar("schedule.exponential.gamma"));
  const std::vector<double>& lrs = get("schedule.exponential.lrs").values;
  ASSERT_GT(lrs.size(), 100u);
  for (size_t e = 0; e < lrs.size(); ++e)
    EXPECT_NEAR(s.lr_at(12345, static_cast<int64_t>(e)), lrs[e], 1e-13 * lrs[e]) << "epoch " << e;
}

TEST(LrSchedule, WarmupMatchesTransformers) {
  const LrSchedule s = LrSchedule::warmup_constant(scalar("schedule.warmup.base_lr"),
                                                   static_cast<int64_t>(scalar("schedule.warmup.warmup_steps")));
  const std::vector<double>& lrs = get("schedule.warmup.lrs").values;
  for (size_t k = 0; k < lrs.size(); ++k)
    EXPECT_DOUBLE_EQ(s.lr_at(static_cast<int64_t>(k), 0), lrs[k]) << "step " << k;
}

TEST(AdamW, RangesFromParameterStoreSkipFrozenAndMergeGroups) {
  ParameterStore store;
  store.declare("text_encoder.a.weight", {4, 3});
  store.declare("text_encoder.a.bias", {4});
  store.declare("duration_predictor.w.weight", {5});
  store.declare("flow.b.weight", {2, 2});
  store.declare("flow.c.weight", {3});
  store.declare("flow.c.bias", {2});
  store.finalize();
  store.enable_grad([](const std::string& name) { return name.rfind("duration_predictor", 0) != 0; });
  const auto decays = [](const std::string& name) { return name.find(".bias") == std::string::npos; };
  const std::vector<kernels::AdamRange> r = adam_ranges_for(store, decays, 0.01);
  // Offsets aligned to 4 elements: weight [0,12) decay, bias [12,16) none, frozen [16,21), gap
  // [21,24), weights [24,28) and [28,31) decay (one range), gap [31,32), bias [32,34) none.
  for (const ParameterInfo& p : store.params()) EXPECT_EQ(p.offset % kParameterAlignment, 0) << p.name;
  EXPECT_EQ(store.flat_numel(), 34);
  EXPECT_EQ(store.count(), 30);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].begin, 0);
  EXPECT_EQ(r[0].end, 12);
  EXPECT_EQ(r[0].weight_decay, 0.01);
  EXPECT_EQ(r[1].begin, 12);
  EXPECT_EQ(r[1].end, 16);
  EXPECT_EQ(r[1].weight_decay, 0.0);
  EXPECT_EQ(r[2].begin, 24);
  EXPECT_EQ(r[2].end, 31);
  EXPECT_EQ(r[2].weight_decay, 0.01);
  EXPECT_EQ(r[3].begin, 32);
  EXPECT_EQ(r[3].end, 34);

  // The frozen parameter keeps its values even though the update sees its (zero) gradient.
  std::vector<float> values(static_cast<size_t>(store.flat_numel()));
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.1f * static_cast<float>(i) - 1.0f;
  store.flat().copy_from(Tensor::from_vector(values, {store.flat_numel()}));
  const std::vector<float> frozen_before = store.get("duration_predictor.w.weight").to_float_vector();
  Tensor grads = Tensor::full({store.flat_numel()}, 0.5);
  AdamW opt(store.flat_numel(), {}, r);
  opt.step(store.flat(), grads, 1e-2);
  EXPECT_EQ(store.get("duration_predictor.w.weight").to_float_vector(), frozen_before);
  EXPECT_EQ(opt.describe(), "AdamW(betas=(0.9, 0.999), eps=1e-08, ranges=4 [decay 0.01: 19, no decay: 6], step=1, f32)");
}

TEST(AdamW, AlignmentGapsInsideARangeStayZero) {
  ParameterStore store;
  store.declare("flow.a.weight", {3});
  store.declare("flow.b.weight", {5});
  store.finalize();
  store.enable_grad([](const std::string&) { return true; });
  const std::vector<kernels::AdamRange> r = adam_ranges_for(store, [](const std::string&) { return true; }, 0.1);
  ASSERT_EQ(r.size(), 1u);  // [0, 9): the gap at 3 lies inside it
  EXPECT_EQ(r[0].begin, 0);
  EXPECT_EQ(r[0].end, 9);
  Tensor params = Tensor::full({store.flat_numel()}, 0.5);
  params.data<float>()[3] = 0.0f;  // the gap, as finalize() leaves it
  Tensor grads = Tensor::full({store.flat_numel()}, 0.25);
  grads.data<float>()[3] = 0.0f;   // no op writes a gradient there
  AdamW opt(store.flat_numel(), {}, r);
  for (int step = 0; step < 3; ++step) opt.step(params, grads, 1e-2);
  EXPECT_EQ(params.data<float>()[3], 0.0f);
  EXPECT_NE(params.data<float>()[2], 0.5f);  // a parameter in the range did move
}

TEST(AdamW, RejectsMismatchedBuffersAndState) {
  AdamW opt(10);
  Tensor params = Tensor::zeros({10}), grads = Tensor::zeros({10});
  Tensor short_grads = Tensor::zeros({9});
  EXPECT_THROW(opt.step(params, short_grads, 1e-3), Error);
  Tensor f64 = Tensor::zeros({10}, DType::F64);
  EXPECT_THROW(opt.step(f64, grads, 1e-3), Error);
  EXPECT_THROW(opt.step(params, grads, -1.0), Error);
  EXPECT_THROW(opt.load_state(Tensor::zeros({9}), Tensor::zeros({10}), 3), Error);
  EXPECT_THROW(opt.load_state(Tensor::zeros({10}), Tensor::zeros({10}), -1), Error);
  EXPECT_THROW(AdamW(10, {}, {{0, 11, 0.0}}), Error);
  AdamWConfig bad;
  bad.beta1 = 1.0;
  EXPECT_THROW(AdamW(10, bad), Error);
  EXPECT_THROW(adam_ranges_with_boundary(10, 11, 0.01), Error);
  opt.step(params, grads, 1e-3);
  EXPECT_EQ(opt.step_count(), 1);
}

}  // namespace
}  // namespace vitscuda
