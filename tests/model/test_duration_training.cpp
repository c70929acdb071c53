// The duration predictors' training loss (model::duration_predictor_loss) against finetune-hf-vits'
// modules (tools/golden/make_duration_training_cases.py): the per-item loss and the gradient of every
// parameter, the flow order of finetune-hf-vits rather than transformers', and a float64 gradient check
// of the whole loss by central differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/parameters.h"
#include "engine/random.h"
#include "io/hf_config.h"
#include "model/duration_predictor.h"
#include "support/gradcheck.h"
#include "support/test_support.h"

using namespace vitscuda;
using vitscuda::testing::relative_l2;

namespace {

const char* const kCaseFile = "model/duration_training_cases.txt";
const char* const kPrefix = "duration_predictor.";

// Two comparisons per case. float64 here against torch's float64 (from the same float32 parameters and
// inputs): only float64 rounding separates them (measured <= 6e-14 relative L2), so 1e-10 proves that every
// term, flip and index is the anchor's. float32 here against torch's float32: both are ill-conditioned in the
// same places (log(w - sigmoid(z_u)) for one-frame tokens, sums of O(100) per-token terms that cancel in a
// bias's gradient), and each side's float32 is up to ~1e-4 relative L2 from float64 on the worst gradient
// (torch 7e-5, printed by the script; ours 1.0e-4), so the two may differ by ~2e-4: 3e-4, looser than 1e-4
// for that reason only. A wrong flip, flow order or missing term moves loss and gradients by > 1e-2.
constexpr double kFloat64Tolerance = 1e-10;
constexpr double kFloat32Tolerance = 3e-4;

struct TrainingCase {
  std::string name;
  io::VitsConfig config;
  std::map<std::string, vitscuda::testing::CaseArray> arrays;  // without the "<case>." prefix

  bool has(const std::string& key) const { return arrays.count(key) != 0; }
  Tensor tensor(const std::string& key, DType dtype = DType::F32) const {
    auto it = arrays.find(key);
    VC_CHECK(it != arrays.end(), kCaseFile << ": case " << name << " has no array " << key);
    return Tensor::from_vector(it->second.values, it->second.shape).to(dtype);
  }
  Tensor optional(const std::string& key, DType dtype = DType::F32) const {
    return has(key) ? tensor(key, dtype) : Tensor();
  }
};

std::map<std::string, TrainingCase> load_cases() {
  std::map<std::string, TrainingCase> cases;
  // "config <case> <json>" lines; every other line is an array named "<case>.<key>".
  const std::string path = vitscuda::testing::data_path(kCaseFile);
  std::ifstream file(path);
  VC_CHECK(file, path << ": cannot open");
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream in(line);
    std::string head, name, json;
    in >> head;
    if (head != "config") continue;
    in >> name;
    std::getline(in, json);
    VC_CHECK(!name.empty() && !cases.count(name), path << ": missing or duplicate case name in '" << line << "'");
    cases[name].name = name;
    cases[name].config = io::VitsConfig::from_json(nlohmann::json::parse(json), path + ": " + name);
  }
  for (auto& [full, array] : vitscuda::testing::read_case_file(kCaseFile, {"config"})) {
    const size_t dot = full.find('.');
    VC_CHECK(dot != std::string::npos && cases.count(full.substr(0, dot)),
             path << ": array " << full << " belongs to no case");
    cases[full.substr(0, dot)].arrays[full.substr(dot + 1)] = array;
  }
  return cases;
}

const TrainingCase& get_case(const std::string& name) {
  static const std::map<std::string, TrainingCase> cases = load_cases();
  auto it = cases.find(name);
  VC_CHECK(it != cases.end(), kCaseFile << " has no case " << name);
  return it->second;
}

// The flat buffers converted to float64 before the values are copied in and before enable_grad, so the
// parameter views and their gradient slots are float64.
void use_float64(ParameterStore& store) { store.flat() = store.flat().to(DType::F64); }

// Declares the predictor, checks its names and shapes against the case's parameters (both ways) and
// copies the values in; every parameter trainable.
ParameterStore load_store(const TrainingCase& c, DType dtype = DType::F32) {
  ParameterStore store;
  model::declare_duration_predictor(c.config, store);
  store.finalize();
  if (dtype == DType::F64) use_float64(store);
  std::set<std::string> declared;
  for (const ParameterInfo& info : store.params()) {
    declared.insert(info.name);
    const std::string key = "param." + info.name.substr(std::string(kPrefix).size());
    EXPECT_TRUE(c.has(key)) << c.name << ": declared " << info.name << " is not a parameter of the anchor's module";
    if (!c.has(key)) continue;
    const Tensor value = c.tensor(key);
    EXPECT_EQ(value.shape(), info.shape) << c.name << ": " << info.name;
    if (value.shape() == info.shape) store.get(info.name).copy_from(value);
  }
  for (const auto& [key, array] : c.arrays)
    if (key.rfind("param.", 0) == 0)
      EXPECT_TRUE(declared.count(kPrefix + key.substr(6))) << c.name << ": the anchor's " << key << " is not declared";
  store.enable_grad([](const std::string&) { return true; });
  return store;
}

// The per-item loss, with the gradient of its batch sum accumulated into the store; inputs in `dtype`.
Tensor loss_with_gradients(const TrainingCase& c, ParameterStore& store, DType dtype = DType::F32) {
  store.zero_grad();
  autograd::Tape tape;
  Tensor loss;
  {
    autograd::RecordingScope recording(tape);
    loss = model::duration_predictor_loss(c.config, store, c.tensor("input.hidden_states", dtype),
                                          c.tensor("input.padding_mask", dtype),
                                          c.optional("input.speaker_embeddings", dtype),
                                          c.tensor("input.durations", dtype), c.optional("input.noise", dtype));
  }
  Tensor total;
  {
    autograd::RecordingScope recording(tape);
    total = ops::sum(loss, 0, false);
  }
  tape.backward(total);
  return loss;
}

class DurationTrainingParity : public ::testing::TestWithParam<std::string> {};

TEST_P(DurationTrainingParity, LossAndEveryGradientMatchTheAnchor) {
  const TrainingCase& c = get_case(GetParam());
  EXPECT_EQ(c.has("input.speaker_embeddings"), c.config.speaker_embedding_size != 0);
  EXPECT_EQ(c.has("input.noise"), c.config.use_stochastic_duration_prediction);
  for (const DType dtype : {DType::F64, DType::F32}) {
    const bool f64 = dtype == DType::F64;
    SCOPED_TRACE(f64 ? "float64" : "float32");
    const double tolerance = f64 ? kFloat64Tolerance : kFloat32Tolerance;
    ParameterStore store = load_store(c, dtype);
    ASSERT_FALSE(HasFailure()) << "parameter names or shapes differ; not running the loss";
    ASSERT_EQ(store.grads().dtype(), dtype);

    const Tensor loss = loss_with_gradients(c, store, dtype);
    const Tensor expected = c.tensor(f64 ? "loss_f64" : "loss", dtype);
    ASSERT_EQ(loss.shape(), expected.shape());
    ASSERT_EQ(loss.dtype(), dtype);
    const double loss_error = relative_l2(loss, expected);
    EXPECT_LT(loss_error, tolerance) << c.name << ": loss " << loss.describe();

    double worst = 0;
    std::string worst_name;
    int compared = 0;
    for (const ParameterInfo& info : store.params()) {
      const std::string short_name = info.name.substr(std::string(kPrefix).size());
      const Tensor golden = c.tensor((f64 ? "grad_f64." : "grad.") + short_name, dtype);
      ASSERT_EQ(golden.shape(), info.shape) << info.name;
      const double err = relative_l2(store.grad(info.name), golden);
      EXPECT_LT(err, tolerance) << c.name << ": gradient of " << info.name;
      if (err > worst) worst = err, worst_name = info.name;
      ++compared;
    }
    // Every parameter of the predictor gets a gradient in the anchor (the script asserts it is non-zero).
    EXPECT_EQ(compared, static_cast<int>(store.params().size()));
    std::cout << "[ duration loss ] " << c.name << (f64 ? " float64" : " float32") << ": loss relative L2 "
              << loss_error << ", " << compared << " gradients, worst relative L2 " << worst << " (" << worst_name
              << ")\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DurationTrainingParity,
                         ::testing::Values("stochastic_no_speaker", "stochastic_speaker", "plain_speaker",
                                           "plain_no_speaker"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The anchor's flow order (no flip after the ElementwiseAffine) and transformers' order give losses far
// apart on these cases; ours matches the first only, so a port with transformers' order fails.
TEST(DurationTraining, FollowsTheAnchorsFlowOrderNotTransformers) {
  for (const char* name : {"stochastic_no_speaker", "stochastic_speaker"}) {
    const TrainingCase& c = get_case(name);
    ParameterStore store = load_store(c);
    const Tensor loss = loss_with_gradients(c, store);
    const Tensor transformers_order = c.tensor("loss_transformers_order");
    const double between_references = relative_l2(transformers_order, c.tensor("loss"));
    EXPECT_GT(between_references, 1e-2) << name << ": the references cannot tell the orders apart";
    EXPECT_LT(relative_l2(loss, c.tensor("loss")), kFloat32Tolerance) << name;
    EXPECT_GT(relative_l2(loss, transformers_order), 1e-2) << name;
    std::cout << "[ duration loss ] " << name << ": anchor vs transformers' order, relative L2 " << between_references
              << "\n";
  }
}

// Only the predictor's parameters are trained: hidden states and speaker embeddings get no gradient.
TEST(DurationTraining, HiddenStatesAndSpeakerGetNoGradient) {
  for (const char* name : {"stochastic_speaker", "plain_speaker"}) {
    const TrainingCase& c = get_case(name);
    ParameterStore store = load_store(c);
    const Tensor hidden = vitscuda::testing::requiring_grad(c.tensor("input.hidden_states"));
    const Tensor speaker = vitscuda::testing::requiring_grad(c.tensor("input.speaker_embeddings"));
    autograd::Tape tape;
    Tensor total;
    {
      autograd::RecordingScope recording(tape);
      total = ops::sum(model::duration_predictor_loss(c.config, store, hidden, c.tensor("input.padding_mask"), speaker,
                                                      c.tensor("input.durations"), c.optional("input.noise")),
                       0, false);
    }
    tape.backward(total);
    EXPECT_FALSE(vitscuda::testing::grad_of(hidden).defined()) << name;
    EXPECT_FALSE(vitscuda::testing::grad_of(speaker).defined()) << name;
    EXPECT_GT(vitscuda::testing::max_abs_diff(store.grads(), Tensor::zeros(store.grads().shape())), 0.0) << name;
  }
}

TEST(DurationTraining, RejectsMismatchedInputs) {
  const TrainingCase& c = get_case("stochastic_no_speaker");
  ParameterStore store = load_store(c);
  const Tensor hidden = c.tensor("input.hidden_states"), mask = c.tensor("input.padding_mask");
  const Tensor durations = c.tensor("input.durations"), noise = c.tensor("input.noise");
  const int64_t B = hidden.dim(0), T = hidden.dim(2);
  const auto message = [&](const Tensor& d, const Tensor& n) {
    return vitscuda::testing::error_of(
        [&] { model::duration_predictor_loss(c.config, store, hidden, mask, Tensor(), d, n); });
  };
  EXPECT_NE(message(Tensor(), noise).find("durations must be [2, 1, 7]"), std::string::npos)
      << message(Tensor(), noise);
  EXPECT_NE(message(Tensor::zeros({B, 1, T + 1}), noise).find("durations"), std::string::npos);
  EXPECT_NE(message(durations, Tensor()).find("noise (e_q) must be"), std::string::npos);
  EXPECT_NE(message(durations, Tensor::zeros({B, 1, T})).find("noise (e_q) must be"), std::string::npos);
  EXPECT_NE(vitscuda::testing::error_of([&] {
              model::duration_predictor_loss(c.config, store, hidden, mask, Tensor::zeros({B, 6, 1}), durations, noise);
            }).find("speaker_embedding_size 0"),
            std::string::npos);
  // The deterministic predictor needs no noise.
  const TrainingCase& plain = get_case("plain_no_speaker");
  ParameterStore plain_store = load_store(plain);
  EXPECT_NO_THROW(model::duration_predictor_loss(plain.config, plain_store, plain.tensor("input.hidden_states"),
                                                 plain.tensor("input.padding_mask"), Tensor(),
                                                 plain.tensor("input.durations"), Tensor()));
}

// ---- float64 gradient check of the whole loss ----

io::VitsConfig tiny_config(bool stochastic) {
  nlohmann::json fields = {{"hidden_size", 8},
                           {"duration_predictor_filter_channels", 8},
                           {"depth_separable_num_layers", 2},
                           {"duration_predictor_flow_bins", 3},
                           {"duration_predictor_num_flows", 2},
                           {"duration_predictor_tail_bound", 2.0},
                           {"layer_norm_eps", 0.05},
                           {"use_stochastic_duration_prediction", stochastic},
                           {"num_speakers", 2},
                           {"speaker_embedding_size", 4}};
  return io::VitsConfig::from_json(fields, "tiny duration predictor");
}

// A float64 store: transformers-style init, then N(0, 0.2) on every value so no parameter sits at
// a special point (zero affine flows, unit LayerNorms).
ParameterStore f64_store(const io::VitsConfig& config, uint64_t seed) {
  ParameterStore store;
  model::declare_duration_predictor(config, store);
  store.finalize();
  store.initialize(seed);
  use_float64(store);
  const Tensor noise = vitscuda::testing::normal_tensor(store.flat().shape(), static_cast<uint32_t>(seed + 1), 0.2);
  double* values = store.flat().data<double>();
  for (int64_t i = 0; i < store.flat().numel(); ++i) values[i] += noise.data<double>()[i];
  store.enable_grad([](const std::string&) { return true; });
  return store;
}

class DurationTrainingGradcheck : public ::testing::TestWithParam<bool> {};

TEST_P(DurationTrainingGradcheck, EveryParameterAgainstCentralDifferences) {
  const bool stochastic = GetParam();
  const io::VitsConfig config = tiny_config(stochastic);
  ParameterStore store = f64_store(config, 21);
  ASSERT_EQ(store.get("duration_predictor.cond.weight").dtype(), DType::F64);
  const int64_t B = 2, T = 5;
  const Tensor hidden = vitscuda::testing::normal_tensor({B, config.hidden_size, T}, 22);
  const Tensor speaker = vitscuda::testing::normal_tensor({B, config.speaker_embedding_size, 1}, 23);
  const Tensor noise = vitscuda::testing::normal_tensor({B, 2, T}, 24);
  const Tensor mask = Tensor::from_vector(std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, {B, 1, T});
  const Tensor durations = Tensor::from_vector(std::vector<double>{3, 1, 5, 2, 4, 2, 6, 1, 0, 0}, {B, 1, T});
  // L = sum_b loss_b * r_b: both items weigh differently, so a gradient landing in the wrong item shows.
  const Tensor r = vitscuda::testing::normal_tensor({B}, 25);
  const auto loss = [&] {
    return model::duration_predictor_loss(config, store, hidden, mask, speaker, durations, noise);
  };

  autograd::Tape tape;
  Tensor weighted;
  {
    autograd::RecordingScope recording(tape);
    weighted = vitscuda::testing::weighted_sum(loss(), r);
  }
  tape.backward(weighted);

  const auto value = [&] {
    autograd::NoGradScope no_grad;
    return vitscuda::testing::weighted_sum_value(loss(), r);
  };
  double worst = 0;
  std::string worst_name;
  for (const ParameterInfo& info : store.params()) {
    Tensor values = store.get(info.name);
    Tensor numeric = Tensor::from_vector(
        vitscuda::testing::numeric_gradient(values.data<double>(), static_cast<size_t>(values.numel()), value),
        info.shape);
    const Tensor analytic = store.grad(info.name);
    // Relative to the largest gradient of the whole predictor: the rounding of L (~1e-16 |L| / h, with
    // |L| ~ 50) is the same absolute size for every parameter, so a tensor whose gradient is small (a
    // LayerNorm bias deep in a flow) must not be judged by its own scale.
    const double err = vitscuda::testing::max_abs_diff(analytic, numeric);
    if (err > worst) worst = err, worst_name = info.name;
    EXPECT_GT(vitscuda::testing::max_abs_diff(analytic, Tensor::zeros(info.shape, DType::F64)), 0.0)
        << info.name << " gets no gradient";
  }
  const double scale = vitscuda::testing::max_abs_diff(store.grads(), Tensor::zeros(store.grads().shape(), DType::F64));
  std::cout << "[ duration gradcheck ] " << (stochastic ? "stochastic" : "plain") << ": "
            << store.params().size() << " parameters, worst max|numeric - analytic| / max|gradient| "
            << worst / scale << " (" << worst_name << ")\n";
  EXPECT_LT(worst / scale, vitscuda::testing::kGradcheckTolerance) << worst_name;
}

INSTANTIATE_TEST_SUITE_P(Predictors, DurationTrainingGradcheck, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Stochastic" : "Plain");
                         });

}  // namespace
